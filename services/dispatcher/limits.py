"""How many requests one dispatcher keeps in flight to one endpoint: a limit that adapts to
how the endpoint answers, as TCP's congestion window adapts to a path.

- It starts at `initial` and, in slow start, grows by one for every good answer (doubling
  each round trip) until the first sign of trouble; after that by one per round trip.
- A good answer is a 2xx within twice the endpoint's baseline time (the quickest answer seen
  lately, drifting up slowly so that a lasting change is learnt) plus a small allowance for
  jitter. A slower 2xx stops the growth and, at most once a round trip, takes a tenth off:
  the receiver is queueing.
- Overload (429, 502, 503, 504) halves it, once a round trip: answers to requests sent
  before a cut say nothing the cut did not already act on. The refused delivery waits for its
  `Retry-After` in casestore's schedule; one that comes with the limit at the floor already
  holds back every new request to the endpoint until it has passed (above the floor, a hold
  after each probe past the receiver's capacity would idle it most of the time).
- No answer (a timeout, a connection error) takes it down to the floor, as TCP after a
  retransmission timeout; slow start leads back to half of what it was.
- Other answers (a 4xx, a 500) say nothing about load and change nothing.
- It grows only while it is used (at least half of it in flight), so an endpoint with little
  traffic never builds a limit it has not tried, and it stays within 1 and the automation's
  `max_in_flight`.
"""

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

# What an answer says about the endpoint's load.
Signal = Literal["good", "slow", "overload", "no_answer", "neutral"]
OVERLOAD_STATUSES = frozenset({429, 502, 503, 504})
FLOOR = 1
# An answer this much slower than the baseline, and by this many seconds, counts as slow.
SLOW_FACTOR = 2.0
SLOW_ALLOWANCE_SECONDS = 0.02
# How fast the baseline follows answers slower than it (per answer).
BASELINE_DRIFT = 0.01


def signal_of(status: int | None, final: bool, seconds: float, baseline: float | None) -> Signal:
    """What one answer says: `final` marks an attempt refused before it left (SSRF)."""
    if status is None:
        return "neutral" if final else "no_answer"
    if status in OVERLOAD_STATUSES:
        return "overload"
    if not 200 <= status < 300:
        return "neutral"
    if baseline is not None and seconds > baseline * SLOW_FACTOR + SLOW_ALLOWANCE_SECONDS:
        return "slow"
    return "good"


@dataclass
class AdaptiveLimit:
    """One endpoint's limit in this dispatcher, and the requests waiting for room under it."""

    initial: int
    ceiling: int
    limit: float = 0.0
    threshold: float = float("inf")  # slow start below it, one per round trip above
    in_flight: int = 0
    baseline: float | None = None  # seconds: the quickest answer lately
    cut_at: float = 0.0  # monotonic time of the last cut
    held_until: float = 0.0  # Retry-After: nothing new starts before it
    waiters: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)

    def __post_init__(self) -> None:
        self.limit = float(min(self.initial, self.ceiling))

    @property
    def current(self) -> int:
        # Steps of 1/n add up to a whole number only within rounding.
        return max(FLOOR, int(self.limit + 1e-9))

    def set_ceiling(self, ceiling: int) -> None:
        """The automation's `max_in_flight`, as it is now (it may have been edited)."""
        self.ceiling = ceiling
        self.limit = min(self.limit, float(ceiling))
        self._wake()

    def has_room(self) -> bool:
        return self.in_flight < self.current and time.monotonic() >= self.held_until

    @contextlib.asynccontextmanager
    async def slot(self, within: float) -> AsyncIterator[float | None]:
        """Room for one request, waiting at most `within` seconds for it, first come first:
        yields the monotonic time it started (None: no room in time, nothing was taken).
        Waiting here takes nothing from another endpoint."""
        try:
            async with asyncio.timeout(max(0.0, within)):
                await self._acquire()
        except TimeoutError:
            yield None
            return
        try:
            yield time.monotonic()
        finally:
            self.in_flight -= 1
            self._wake()

    async def _acquire(self) -> None:
        if not self.waiters and self.has_room():
            self.in_flight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # granted just as it was given up: give it back
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
            raise

    def _wake(self) -> None:
        """Grant room to waiters, first come first, as far as there is some now."""
        while self.waiters and self.has_room():
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def answered(self, started: float, signal: Signal, seconds: float,
                 retry_after: float | None = None) -> None:
        """Adapt to one answer to a request begun at `started` (monotonic) that took
        `seconds`, while its room is still held."""
        if signal in ("good", "slow"):
            self._learn(seconds)
        if signal == "good":
            self._grow()
        elif signal == "slow":
            self.threshold = min(self.threshold, self.limit)
            self._cut(started, 0.9)
        elif signal == "overload":
            at_floor = self.current == FLOOR
            self._cut(started, 0.5)
            if retry_after and at_floor:
                self._hold(retry_after)
        elif signal == "no_answer" and self._cut(started, 0.5):
            self.limit = float(FLOOR)
        self._wake()

    def _hold(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        if until > self.held_until:
            self.held_until = until
            asyncio.get_running_loop().call_later(seconds, self._wake)

    def _learn(self, seconds: float) -> None:
        if self.baseline is None or seconds < self.baseline:
            self.baseline = seconds
        else:
            self.baseline += (seconds - self.baseline) * BASELINE_DRIFT

    def _grow(self) -> None:
        if self.in_flight < self.limit / 2:
            return  # not used: nothing learnt about a bigger limit
        step = 1.0 if self.limit < self.threshold else 1.0 / self.current
        self.limit = min(float(self.ceiling), self.limit + step)

    def _cut(self, started: float, factor: float) -> bool:
        """Cut once per round trip: not for a request sent before the last cut."""
        if started < self.cut_at:
            return False
        self.cut_at = time.monotonic()
        self.threshold = max(float(FLOOR), self.limit * 0.5)
        self.limit = max(float(FLOOR), self.limit * factor)
        return True
