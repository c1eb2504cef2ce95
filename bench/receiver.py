"""The external system Casewire's outgoing webhook calls: `python -m bench.receiver PORT`.

`POST /deliver` (and `POST /deliver/<bucket>`, kept apart) answers `200 {}` at once and notes,
per delivery, the request id and send time that the incoming webhook's body carried (the
automation copies the `text-field`, which holds `"<id>|<monotonic send time>"`, into the key
`t`) and the arrival time on the same clock. `POST /hang` never answers (until shutdown): an
endpoint that hangs.

`GET /stats` is `{"count": deliveries, "last": monotonic time of the latest, "bad": ...,
"buckets": {bucket: deliveries}, "hanging": requests held open}`;
`GET /dump[?bucket=<bucket>]` is `{"ids": [...], "sent": [...], "arrived": [...]}` in arrival
order.
"""

from __future__ import annotations

import asyncio
import sys
import time
from array import array
from dataclasses import dataclass, field

import orjson
from aiohttp import web

MAIN = ""  # the bucket of POST /deliver


@dataclass
class Arrivals:
    ids: array[int] = field(default_factory=lambda: array("q"))
    sent: array[float] = field(default_factory=lambda: array("d"))
    arrived: array[float] = field(default_factory=lambda: array("d"))
    bad: list[str] = field(default_factory=list)


@dataclass
class Hanging:
    count: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)


BUCKETS = web.AppKey("buckets", dict)
HANGING = web.AppKey("hanging", Hanging)


async def deliver(request: web.Request) -> web.Response:
    arrived = time.monotonic()
    body = await request.read()
    bucket = request.app[BUCKETS].setdefault(request.match_info.get("bucket", MAIN), Arrivals())
    try:
        request_id, sent = orjson.loads(body)["t"].split("|")
        bucket.ids.append(int(request_id[1:]))
        bucket.sent.append(float(sent))
        bucket.arrived.append(arrived)
    except (ValueError, KeyError, TypeError, AttributeError):
        bucket.bad.append(body[:200].decode(errors="replace"))
    return web.Response(body=b"{}", content_type="application/json")


async def hang(request: web.Request) -> web.Response:
    hanging = request.app[HANGING]
    hanging.count += 1
    try:
        await hanging.released.wait()
    finally:
        hanging.count -= 1
    return web.Response(body=b"{}", content_type="application/json")


async def release(app: web.Application) -> None:
    """On shutdown: the hanging requests end, so the server need not wait for them."""
    app[HANGING].released.set()


async def stats(request: web.Request) -> web.Response:
    buckets: dict[str, Arrivals] = request.app[BUCKETS]
    main = buckets[MAIN]
    body = {"count": len(main.arrived), "last": main.arrived[-1] if main.arrived else None,
            "bad": sum(len(b.bad) for b in buckets.values()),
            "buckets": {name: len(b.arrived) for name, b in buckets.items() if name},
            "hanging": request.app[HANGING].count}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def dump(request: web.Request) -> web.Response:
    bucket = request.app[BUCKETS].get(request.query.get("bucket", MAIN), Arrivals())
    body = {"ids": bucket.ids.tolist(), "sent": bucket.sent.tolist(),
            "arrived": bucket.arrived.tolist(), "bad": bucket.bad[:20]}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def create_app() -> web.Application:
    app = web.Application()
    app[BUCKETS] = {MAIN: Arrivals()}
    app[HANGING] = Hanging()
    app.on_shutdown.append(release)
    app.router.add_post("/deliver", deliver)
    app.router.add_post("/deliver/{bucket}", deliver)
    app.router.add_post("/hang", hang)
    app.router.add_get("/stats", stats)
    app.router.add_get("/dump", dump)
    return app


def main(port: int) -> None:
    import uvloop

    uvloop.install()
    web.run_app(create_app(), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
