"""A TCP proxy the tests can cut, to play a broker or database outage without touching theirs.

It can also hold back what the server sends (a confirm that does not come) and slow it down (a
broker that answers late), while everything the client sends still goes through.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.settings import Settings
from tests.stack import Stack, free_port


@contextlib.asynccontextmanager
async def replaced(stack: Stack, service: str, **overrides: Any) -> AsyncIterator[Stack]:
    """Run `service` with other settings (e.g. through a proxy) in place of the stack's own."""
    await stack.stop(service)
    other = Stack(stack.settings.model_copy(update={
        f"{service}_port": free_port(), **overrides}))
    await other.start(service)
    try:
        yield other
    finally:
        await other.stop(service)
        await stack.start(service)


class CuttableProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.port = free_port()
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._replies_flow = asyncio.Event()
        self._replies_flow.set()
        self.reply_delay = 0.0  # seconds each chunk from the server waits before it is passed on

    async def start(self) -> None:
        if self._server is not None:
            return  # already accepting
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones, as a dead broker would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()

    def freeze_replies(self) -> None:
        """Hold back everything the server sends (kept, in order) until `thaw_replies`."""
        self._replies_flow.clear()

    def thaw_replies(self) -> None:
        self._replies_flow.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        for src, dst, replies in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.create_task(self._pipe(src, dst, replies))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    replies: bool) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                if replies:
                    await self._replies_flow.wait()
                    if self.reply_delay:
                        await asyncio.sleep(self.reply_delay)
                dst.write(data)
                await dst.drain()
        self._writers.discard(dst)
        dst.transport.abort()


@dataclass
class ProxiedIngest:
    """A second ingest whose broker (and, if asked, database) connections pass proxies."""

    stack: Stack
    broker: CuttableProxy
    database: CuttableProxy | None

    def url(self, path: str) -> str:
        return f"{self.stack.url('ingest')}{path}"


@contextlib.asynccontextmanager
async def proxied_ingest(settings: Settings, *, database: bool = False,
                         **overrides: object) -> AsyncIterator[ProxiedIngest]:
    broker = CuttableProxy(urlsplit(settings.amqp_url).port or 5672)
    await broker.start()
    update: dict[str, object] = {
        "amqp_url": f"amqp://guest:guest@127.0.0.1:{broker.port}/", "ingest_port": free_port(),
        **overrides}
    db = None
    if database:
        parts = urlsplit(settings.database_url)
        db = CuttableProxy(parts.port or 5432)
        await db.start()
        update["database_url"] = urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{db.port}"))
    ingest = ProxiedIngest(Stack(settings.model_copy(update=update)), broker, db)
    await ingest.stack.start("ingest")
    try:
        yield ingest
    finally:
        for proxy in (broker, db):
            if proxy is not None:
                proxy.thaw_replies()
                await proxy.cut()
        await ingest.stack.stop("ingest")
