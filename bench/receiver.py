"""The external system Casewire's outgoing webhook calls: `python -m bench.receiver PORT`.

`POST /deliver` (and `POST /deliver/<bucket>`, kept apart) answers `200 {}` at once and notes,
per delivery, the request id and send time that the incoming webhook's body carried (the
automation copies the `text-field`, which holds `"<id>|<monotonic send time>"`, into the key
`t`) and the arrival time on the same clock. `POST /hang` never answers (until shutdown): an
endpoint that hangs.

`POST /distant/<bucket>?ms=M&most=N` plays a distant receiver: it answers after M ms, and
`429` (`Retry-After: 1`) to a request beyond N at once; `POST /down/<bucket>` makes it answer
`503` at once until `POST /up/<bucket>`. Only its `200`s count as deliveries.

`GET /stats` is `{"count": deliveries, "last": monotonic time of the latest, "bad": ...,
"buckets": {bucket: deliveries}, "hanging": requests held open, "peaks": {bucket: most
requests at once}}`;
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


@dataclass
class Distant:
    """Per bucket of /distant: requests being answered, the most at once, whether it is down."""

    now: dict[str, int] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)


BUCKETS = web.AppKey("buckets", dict)
HANGING = web.AppKey("hanging", Hanging)
DISTANT = web.AppKey("distant", Distant)


async def deliver(request: web.Request) -> web.Response:
    arrived = time.monotonic()
    body = await request.read()
    _note(request.app, request.match_info.get("bucket", MAIN), body, arrived)
    return web.Response(body=b"{}", content_type="application/json")


async def distant(request: web.Request) -> web.Response:
    arrived = time.monotonic()
    body = await request.read()
    name, state = request.match_info["bucket"], request.app[DISTANT]
    if name in state.down:
        return web.Response(status=503)
    state.now[name] = state.now.get(name, 0) + 1
    state.peaks[name] = max(state.peaks.get(name, 0), state.now[name])
    try:
        if state.now[name] > int(request.query.get("most", "1000000")):
            return web.Response(status=429, headers={"Retry-After": "1"})
        await asyncio.sleep(int(request.query.get("ms", "0")) / 1000)
    finally:
        state.now[name] -= 1
    _note(request.app, name, body, arrived)
    return web.Response(body=b"{}", content_type="application/json")


async def switch(request: web.Request) -> web.Response:
    down, name = request.app[DISTANT].down, request.match_info["bucket"]
    if request.match_info["state"] == "down":
        down.add(name)
    else:
        down.discard(name)
    return web.Response(body=b"{}", content_type="application/json")


def _note(app: web.Application, name: str, body: bytes, arrived: float) -> None:
    bucket = app[BUCKETS].setdefault(name, Arrivals())
    try:
        request_id, sent = orjson.loads(body)["t"].split("|")
        bucket.ids.append(int(request_id[1:]))
        bucket.sent.append(float(sent))
        bucket.arrived.append(arrived)
    except (ValueError, KeyError, TypeError, AttributeError):
        bucket.bad.append(body[:200].decode(errors="replace"))


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
            "hanging": request.app[HANGING].count, "peaks": request.app[DISTANT].peaks}
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
    app[DISTANT] = Distant()
    app.on_shutdown.append(release)
    app.router.add_post("/deliver", deliver)
    app.router.add_post("/deliver/{bucket}", deliver)
    app.router.add_post("/hang", hang)
    app.router.add_post("/distant/{bucket}", distant)
    app.router.add_post("/{state:down|up}/{bucket}", switch)
    app.router.add_get("/stats", stats)
    app.router.add_get("/dump", dump)
    return app


def main(port: int) -> None:
    import uvloop

    uvloop.install()
    web.run_app(create_app(), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
