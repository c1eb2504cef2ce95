"""The attempts one dispatcher is sending: at most so many per endpoint at a time, none sent
twice by it, and a shutdown that lets them finish within the grace."""

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

log = structlog.get_logger(__name__)

REMEMBERED_ATTEMPTS = 100_000


@dataclass
class InFlight:
    """The attempts this process is sending; on shutdown they may finish within the grace."""

    concurrency: int  # requests in flight per endpoint
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    slots: dict[uuid.UUID, asyncio.Semaphore] = field(default_factory=dict)
    # Endpoints whose last attempt from here failed: their attempts go through casestore's
    # schedule (its circuit breaker, its waits) rather than straight out.
    failing: set[uuid.UUID] = field(default_factory=set)
    # Attempts begun here lately: an attempt message that comes back after a lost connection
    # (its ack lost with it) is not sent a second time by the process that sent it. Kept as
    # one int per attempt (`_memo`): half the memory of a (UUID, number) tuple.
    begun: OrderedDict[int, None] = field(default_factory=OrderedDict)

    def start(self, key: tuple[uuid.UUID, int], work: Coroutine[Any, Any, None]) -> None:
        memo = _memo(key)
        if memo in self.begun:
            work.close()
            log.info("attempt_already_begun", delivery_id=str(key[0]), number=key[1])
            return
        self.begun[memo] = None
        if len(self.begun) > REMEMBERED_ATTEMPTS:
            self.begun.popitem(last=False)
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # casestore hands the attempt out again when its lease runs out.
            log.error("attempt_failed", error=repr(error), exc_info=error)

    def free_now(self, automation_id: uuid.UUID) -> bool:
        """A request to this endpoint could start at once, and it did not just fail."""
        slots = self.slots.get(automation_id)
        return automation_id not in self.failing and (slots is None or not slots.locked())

    def outcome(self, automation_id: uuid.UUID, succeeded: bool) -> None:
        if succeeded:
            self.failing.discard(automation_id)
        else:
            self.failing.add(automation_id)

    @contextlib.asynccontextmanager
    async def slot(self, automation_id: uuid.UUID, latest: datetime) -> AsyncIterator[bool]:
        """One of the endpoint's request slots, if one frees up before `latest`.

        Waiting here takes nothing another endpoint could use: the attempt's message was
        acknowledged on arrival.
        """
        slots = self.slots.setdefault(automation_id, asyncio.Semaphore(self.concurrency))
        seconds = (latest - datetime.now(UTC)).total_seconds()
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                await slots.acquire()
        except TimeoutError:
            yield False
            return
        try:
            yield True
        finally:
            slots.release()

    async def drain(self, grace_seconds: float) -> None:
        if not self.tasks:
            return
        _, unfinished = await asyncio.wait(set(self.tasks), timeout=grace_seconds)
        for task in unfinished:
            task.cancel()
        if unfinished:
            log.warning("shutdown_with_attempts_in_flight", count=len(unfinished),
                        note="casestore hands them out again when their lease runs out")
            await asyncio.wait(unfinished)


def _memo(key: tuple[uuid.UUID, int]) -> int:
    """(delivery id, attempt number) as one int: the number above the id's 128 bits."""
    delivery_id, number = key
    return (number << 128) | delivery_id.int
