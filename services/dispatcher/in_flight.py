"""The attempts one dispatcher is sending: at most so many per endpoint at a time, none sent
twice by it, and a shutdown that lets them finish within the grace.

It also decides whether a first attempt may wait here for one of the endpoint's slots. A first
attempt that this dispatcher takes on itself saves a round through casestore's schedule (an
update, an outbox row, a `delivery.due` message); it is worth it while the wait is short. The
wait is estimated from how long the endpoint's recent attempts from here took, so a slow
endpoint's first attempts go through the schedule as soon as its slots are busy, and a fast
one's queue here for up to `first_attempt_wait_seconds`.
"""

import asyncio
import contextlib
import functools
import uuid
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

log = structlog.get_logger(__name__)

REMEMBERED_ATTEMPTS = 100_000
# However fast an endpoint answers, no more of its attempts than this wait here at a time.
MOST_HELD = 1000
# Weight of the newest attempt in an endpoint's mean attempt time.
DURATION_WEIGHT = 0.2


@dataclass
class InFlight:
    """The attempts this process is sending; on shutdown they may finish within the grace."""

    concurrency: int  # requests in flight per endpoint
    # How long a first attempt may expect to wait here for a slot (0: only a free one).
    first_attempt_wait_seconds: float = 1.0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    slots: dict[uuid.UUID, asyncio.Semaphore] = field(default_factory=dict)
    # Endpoints whose last attempt from here failed: their attempts go through casestore's
    # schedule (its circuit breaker, its waits) rather than straight out.
    failing: set[uuid.UUID] = field(default_factory=set)
    # Attempts begun here lately: an attempt message that comes back after a lost connection
    # (its ack lost with it) is not sent a second time by the process that sent it. Kept as
    # one int per attempt (`_memo`): half the memory of a (UUID, number) tuple.
    begun: OrderedDict[int, None] = field(default_factory=OrderedDict)
    # Per endpoint: attempts here (sending, or waiting for a slot), and the mean seconds its
    # recent attempts took.
    held: Counter[uuid.UUID] = field(default_factory=Counter)
    seconds: dict[uuid.UUID, float] = field(default_factory=dict)

    def take_first(self, automation_id: uuid.UUID) -> bool:
        """Whether this dispatcher sends the endpoint's next first attempt itself; if so it
        counts as held from now (`start(..., taken=True)` or `release` follow)."""
        if automation_id in self.failing or not self._room(automation_id):
            return False
        self.held[automation_id] += 1
        return True

    def _room(self, automation_id: uuid.UUID) -> bool:
        held = self.held[automation_id]
        if held < self.concurrency:
            return True
        mean = self.seconds.get(automation_id)
        if mean is None or held >= MOST_HELD:
            return False
        # Rounds of `concurrency` attempts that must end before this one can start.
        wait = -(-(held - self.concurrency + 1) // self.concurrency) * mean
        return wait <= self.first_attempt_wait_seconds

    def release(self, automation_id: uuid.UUID) -> None:
        self.held[automation_id] -= 1
        if self.held[automation_id] <= 0:
            del self.held[automation_id]

    def start(self, automation_id: uuid.UUID, key: tuple[uuid.UUID, int],
              work: Coroutine[Any, Any, None], *, taken: bool = False) -> None:
        if not taken:
            self.held[automation_id] += 1
        memo = _memo(key)
        if memo in self.begun:
            work.close()
            self.release(automation_id)
            log.info("attempt_already_begun", delivery_id=str(key[0]), number=key[1])
            return
        self.begun[memo] = None
        if len(self.begun) > REMEMBERED_ATTEMPTS:
            self.begun.popitem(last=False)
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, automation_id))

    def _finished(self, automation_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.release(automation_id)
        if not task.cancelled() and (error := task.exception()) is not None:
            # casestore hands the attempt out again when its lease runs out.
            log.error("attempt_failed", error=repr(error), exc_info=error)

    def outcome(self, automation_id: uuid.UUID, succeeded: bool, seconds: float) -> None:
        if succeeded:
            self.failing.discard(automation_id)
        else:
            self.failing.add(automation_id)
        mean = self.seconds.get(automation_id, seconds)
        self.seconds[automation_id] = mean + DURATION_WEIGHT * (seconds - mean)

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
