"""The external system Casewire's outgoing webhook calls: `python -m bench.receiver PORT`.

It answers every delivery `200 {}` at once and notes, per delivery, the request id and send
time that the incoming webhook's body carried (the automation copies the `text-field`, which
holds `"<id>|<monotonic send time>"`, into the key `t`) and the arrival time on the same clock.

`GET /stats` is `{"count": deliveries, "last": monotonic time of the latest}`;
`GET /dump` is `{"ids": [...], "sent": [...], "arrived": [...]}` in arrival order.
"""

import sys
import time
from array import array

import orjson
from aiohttp import web

IDS = web.AppKey("ids", array)
SENT = web.AppKey("sent", array)
ARRIVED = web.AppKey("arrived", array)
BAD = web.AppKey("bad", list)


async def deliver(request: web.Request) -> web.Response:
    arrived = time.monotonic()
    body = await request.read()
    app = request.app
    try:
        request_id, sent = orjson.loads(body)["t"].split("|")
        app[IDS].append(int(request_id[1:]))
        app[SENT].append(float(sent))
        app[ARRIVED].append(arrived)
    except (ValueError, KeyError, TypeError, AttributeError):
        app[BAD].append(body[:200].decode(errors="replace"))
    return web.Response(body=b"{}", content_type="application/json")


async def stats(request: web.Request) -> web.Response:
    arrived = request.app[ARRIVED]
    body = {"count": len(arrived), "last": arrived[-1] if arrived else None,
            "bad": len(request.app[BAD])}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def dump(request: web.Request) -> web.Response:
    app = request.app
    body = {"ids": app[IDS].tolist(), "sent": app[SENT].tolist(),
            "arrived": app[ARRIVED].tolist(), "bad": app[BAD][:20]}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def create_app() -> web.Application:
    app = web.Application()
    app[IDS] = array("q")
    app[SENT] = array("d")
    app[ARRIVED] = array("d")
    app[BAD] = []
    app.router.add_post("/deliver", deliver)
    app.router.add_get("/stats", stats)
    app.router.add_get("/dump", dump)
    return app


def main(port: int) -> None:
    import uvloop

    uvloop.install()
    web.run_app(create_app(), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
