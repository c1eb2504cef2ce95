"""The attempts one dispatcher is sending: under each endpoint's adaptive limit (limits.py),
none sent twice by it, and a shutdown that lets them finish within the grace.

It also decides whether a first attempt may wait here for room under the endpoint's limit. A
first attempt that this dispatcher takes on itself saves a round through casestore's schedule
(an update, an outbox row, a `delivery.due` message); it is worth it while the wait is short.
The wait is estimated from how long the endpoint's recent attempts from here took, so a slow
endpoint's first attempts go through the schedule as soon as its limit is used up, and a fast
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
from typing import Any, Literal

import structlog

from services.dispatcher.limits import AdaptiveLimit, signal_of
from services.dispatcher.sender import Sent

log = structlog.get_logger(__name__)

REMEMBERED_ATTEMPTS = 100_000
# However fast an endpoint answers, no more of its attempts than this wait here at a time.
MOST_HELD = 1000
# Weight of the newest attempt in an endpoint's mean attempt time.
DURATION_WEIGHT = 0.2
# An attempt as casestore handed it out: delivery id, number, lease.
AttemptKey = tuple[uuid.UUID, int, datetime]


@dataclass(eq=False)  # one per process, told apart by identity (metrics.EndpointLimits)
class InFlight:
    """The attempts this process is sending; on shutdown they may finish within the grace."""

    initial_limit: int  # an endpoint's limit of requests in flight before it has answered
    default_ceiling: int  # the most, for automations that set no `max_in_flight`
    # How long a first attempt may expect to wait here for room (0: only when there is some).
    first_attempt_wait_seconds: float = 1.0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    limits: dict[uuid.UUID, AdaptiveLimit] = field(default_factory=dict)
    # Endpoints whose last attempt from here failed: their attempts go through casestore's
    # schedule (its circuit breaker, its waits) rather than straight out.
    failing: set[uuid.UUID] = field(default_factory=set)
    # Attempts begun here lately, with the end of the lease each was begun under. This
    # process does not send one again for an attempt message that comes back after a lost
    # connection (its ack lost with it: the same lease), nor for its case event fired again
    # while that lease lasts (published twice). casestore handing it out under another lease
    # means its outcome never arrived: that is sent. Keyed by one int per attempt (`_memo`):
    # half the memory of a (UUID, number) tuple.
    begun: OrderedDict[int, float] = field(default_factory=OrderedDict)
    # Per endpoint: attempts here (sending, or waiting for room), and the mean seconds its
    # recent attempts took.
    held: Counter[uuid.UUID] = field(default_factory=Counter)
    seconds: dict[uuid.UUID, float] = field(default_factory=dict)

    def limit(self, automation_id: uuid.UUID,
              max_in_flight: int | Literal["as is"] | None = "as is") -> AdaptiveLimit:
        """The endpoint's limit here; `max_in_flight`: its automation's setting as it is now
        (None: the default ceiling)."""
        found = self.limits.get(automation_id)
        if max_in_flight == "as is":
            ceiling = found.ceiling if found is not None else self.default_ceiling
        else:
            ceiling = max_in_flight or self.default_ceiling
        if found is None:
            found = self.limits[automation_id] = AdaptiveLimit(self.initial_limit, ceiling)
        elif found.ceiling != ceiling:
            found.set_ceiling(ceiling)
        return found

    def take_first(self, automation_id: uuid.UUID, max_in_flight: int | None = None) -> bool:
        """Whether this dispatcher sends the endpoint's next first attempt itself; if so it
        counts as held from now (`start(..., taken=True)` or `release` follow)."""
        limit = self.limit(automation_id, max_in_flight).current
        if automation_id in self.failing or not self._room(automation_id, limit):
            return False
        self.held[automation_id] += 1
        return True

    def _room(self, automation_id: uuid.UUID, limit: int) -> bool:
        held = self.held[automation_id]
        if held < limit:
            return True
        mean = self.seconds.get(automation_id)
        if mean is None or held >= MOST_HELD:
            return False
        # The rounds before the next attempt's own must end before it can start.
        return (_rounds(held + 1, limit) - 1) * mean <= self.first_attempt_wait_seconds

    def ends_within(self, automation_id: uuid.UUID, seconds: float) -> bool:
        """Whether the endpoint's attempt taken last (`take_first`) should have ended within
        `seconds`, judging by its recent attempts: the rounds ahead of it, then its own."""
        mean = self.seconds.get(automation_id)
        limit = self.limit(automation_id).current
        return mean is not None and _rounds(self.held[automation_id], limit) * mean <= seconds

    def release(self, automation_id: uuid.UUID) -> None:
        self.held[automation_id] -= 1
        if self.held[automation_id] <= 0:
            del self.held[automation_id]

    def start(self, automation_id: uuid.UUID, key: AttemptKey,
              work: Coroutine[Any, Any, None], *, taken: bool = False) -> bool:
        """Run `work` unless this process began the attempt before (see `begun`; `taken`: a
        first attempt fired here, not handed out); whether it runs."""
        if not taken:
            self.held[automation_id] += 1
        delivery_id, number, lease_until = key
        memo = _memo(delivery_id, number)
        until = self.begun.get(memo)
        if until is not None and (until == lease_until.timestamp()
                                  or (taken and until > datetime.now(UTC).timestamp())):
            work.close()
            self.release(automation_id)
            log.info("attempt_already_begun", delivery_id=str(delivery_id), number=number)
            return False
        self.begun[memo] = lease_until.timestamp()
        self.begun.move_to_end(memo)
        if len(self.begun) > REMEMBERED_ATTEMPTS:
            self.begun.popitem(last=False)
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, automation_id))
        return True

    def _finished(self, automation_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.release(automation_id)
        if not task.cancelled() and (error := task.exception()) is not None:
            # casestore hands the attempt out again when its lease runs out.
            log.error("attempt_failed", error=repr(error), exc_info=error)

    def answered(self, automation_id: uuid.UUID, started: float, sent: Sent) -> None:
        """Learn from an attempt begun at `started` (monotonic; its room still held)."""
        seconds = sent.attempt.duration_ms / 1000
        self.outcome(automation_id, sent.verdict == "succeeded", seconds)
        limit = self.limit(automation_id)
        limit.answered(started, signal_of(sent.attempt.response_status, sent.verdict == "final",
                                          seconds, limit.baseline),
                       seconds, sent.retry_after)

    def outcome(self, automation_id: uuid.UUID, succeeded: bool, seconds: float) -> None:
        """Whether the endpoint's attempts go straight out from here, and how long they take."""
        if succeeded:
            self.failing.discard(automation_id)
        else:
            self.failing.add(automation_id)
        mean = self.seconds.get(automation_id, seconds)
        self.seconds[automation_id] = mean + DURATION_WEIGHT * (seconds - mean)

    @contextlib.asynccontextmanager
    async def slot(self, automation_id: uuid.UUID, latest: datetime) -> AsyncIterator[float | None]:
        """Room for one request under the endpoint's limit, if there is some before `latest`:
        the monotonic time it began (None: none in time).

        Waiting here takes nothing another endpoint could use: the attempt's message was
        acknowledged on arrival.
        """
        seconds = (latest - datetime.now(UTC)).total_seconds()
        async with self.limit(automation_id).slot(seconds) as started:
            yield started

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


def _rounds(attempts: int, limit: int) -> int:
    """Rounds of `limit` attempts at once that `attempts` take."""
    return -(-attempts // limit)


def _memo(delivery_id: uuid.UUID, number: int) -> int:
    """(delivery id, attempt number) as one int: the number above the id's 128 bits."""
    return (number << 128) | delivery_id.int
