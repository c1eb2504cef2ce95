"""A real HTTP receiver on 127.0.0.1 playing the external system an outgoing webhook calls."""

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.stack import free_port


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    query_string: str  # raw, exactly as it arrived
    arrived_at: float  # event-loop time, for measuring the gap between attempts
    peer_port: int  # the client's port: the same on a reused connection

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False  # answer only once `Receiver.release` is set (at the latest, on stop)


@dataclass
class Capacity:
    """What a path takes at once: above `most` concurrent requests it answers `over`."""

    most: int
    over: Reply = field(default_factory=lambda: Reply(status=429, headers={"Retry-After": "1"}))


class Receiver:
    """Records every request; answers each path from a script of replies (the last repeats),
    within the path's capacity if it has one, and counts its concurrent requests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Received] = []
        self._scripts: dict[str, list[Reply]] = {}
        self.capacity: dict[str, Capacity] = {}
        # Per path: requests being answered now, and the most there were at once.
        self.concurrent: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        # Paths that answer 503 at once, as a receiver in an outage.
        self.down: set[str] = set()
        self._arrived = asyncio.Condition()
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls) -> AsyncIterator["Receiver"]:
        receiver = cls()
        await receiver.start()
        try:
            yield receiver
        finally:
            await receiver.stop()

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def endpoint(self, *replies: Reply) -> str:
        """A fresh URL on this receiver answering with `replies` in turn."""
        path = f"/hook/{uuid.uuid4().hex}"
        self._scripts[path] = list(replies) or [Reply()]
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, url: str) -> list[Received]:
        path = self.path(url)
        return [r for r in self.requests if r.path == path]

    def path(self, url: str) -> str:
        return url.split(str(self.port), 1)[1].split("?", 1)[0]

    async def wait_for(self, url: str, count: int, within: float = 15.0) -> list[Received]:
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.at(url)) >= count)
        return self.at(url)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen = Received(request.method, request.path, dict(request.query),
                        dict(request.headers), await request.read(),
                        query_string=request.rel_url.raw_query_string,
                        arrived_at=asyncio.get_running_loop().time(),
                        peer_port=peer[1] if peer else 0)
        async with self._arrived:
            self.requests.append(seen)
            self._arrived.notify_all()
        self.concurrent[request.path] += 1
        self.peak[request.path] = max(self.peak[request.path], self.concurrent[request.path])
        try:
            return await self._answer(request.path)
        finally:
            self.concurrent[request.path] -= 1

    async def _answer(self, path: str) -> web.StreamResponse:
        script = self._scripts.get(path, [Reply()])
        reply = script.pop(0) if len(script) > 1 else script[0]
        capacity = self.capacity.get(path)
        if path in self.down:
            reply = Reply(status=503)
        elif capacity is not None and self.concurrent[path] > capacity.most:
            reply = capacity.over
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.hang:
            await self.release.wait()
        body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
        content_type = "text/plain" if isinstance(reply.body, bytes) else "application/json"
        return web.Response(status=reply.status, body=body,
                            headers={"Content-Type": content_type, **reply.headers})
