"""A TCP proxy the tests can cut, to play a broker or database outage without touching theirs."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

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

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        self._writers.discard(dst)
        dst.transport.abort()
