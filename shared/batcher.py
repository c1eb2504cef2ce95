"""Micro-batching: concurrent callers' items are written together, each caller gets its outcome.

Every caller awaits its own item's outcome, so a message handler still acks only after what
holds its effect (casestore's transaction, the dispatcher's confirmed publish) is done. Batches
form by themselves: whatever arrived while the previous batch was being written is the next
batch, so a lone item waits for nothing.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import structlog

from shared.outages import OUTAGES
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# The outcome of each item, in order: a result, or the exception its caller should see.
WriteMany = Callable[[list[T]], Awaitable[list[R | Exception]]]


class Batcher(Generic[T, R]):
    def __init__(self, name: str, write: WriteMany[T, R], max_size: int):
        self._name = name
        self._write = write
        self._max_size = max_size
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Write batches while the block runs; stop after it (callers must have finished)."""
        task = asyncio.create_task(self._run(), name=f"batcher-{self._name}")
        try:
            yield
        finally:
            await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._settle(batch)
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise

    async def _settle(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            outcomes = await self._write(items)
        except OUTAGES as exc:
            # Every caller retries in place; splitting the batch would not help.
            outcomes = [exc] * len(batch)
        except Exception as exc:
            if len(batch) == 1:
                outcomes = [exc]
            else:
                # One bad item must not fail the others: find it by writing each alone.
                log.warning("batch_failed_writing_singly", batcher=self._name, size=len(batch),
                            error=repr(exc))
                for entry in batch:
                    await self._settle([entry])
                return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
