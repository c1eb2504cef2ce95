"""Counting failed logins: per key (a username, a client address, everyone), within the last
minute, with the checks still running counted too (so a burst of concurrent guesses cannot
slip past the limit while they are being checked). Used by the auth-key calls
(logins.py) and the console's sign-in (console/sign_in.py)."""

import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

WINDOW_SECONDS = 60.0
# Past this many tracked names or addresses, stale entries are swept (and, in a flood from
# very many sources, the oldest dropped), so the guard's own memory stays bounded.
MAX_KEYS = 50_000


class FailureLog:
    """Failures per key within the last minute, plus checks of that key still running."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._failures: dict[str, deque[float]] = {}
        self._running: Counter[str] = Counter()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - WINDOW_SECONDS:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def wait(self, key: str, now: float) -> float | None:
        """Seconds until `key` may try again, or None if it may now."""
        times = self._recent(key, now)
        if len(times) + self._running[key] < self.limit:
            return None
        # Only checks still running fill the limit: they end within seconds.
        return times[0] + WINDOW_SECONDS - now if len(times) >= self.limit else 1.0

    def begin(self, key: str) -> None:
        self._running[key] += 1

    def end(self, key: str, failed: bool, now: float) -> None:
        self._running[key] -= 1
        if self._running[key] <= 0:
            del self._running[key]
        if failed:
            self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > MAX_KEYS:
                self._sweep(now)

    def _sweep(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        if len(self._failures) > MAX_KEYS * 3 // 4:
            for key in list(self._failures)[:len(self._failures) - MAX_KEYS // 2]:
                del self._failures[key]

    def failures(self, key: str) -> int:
        """Failures of `key` within the last minute."""
        return len(self._recent(key, time.monotonic()))


@dataclass
class Attempt:
    """Set `failed` once the secret proved wrong; an error is no wrong guess."""

    failed: bool = False


@contextmanager
def attempt(keyed: Sequence[tuple[FailureLog, str]],
            refused: Callable[[float], Exception]) -> Iterator[Attempt]:
    """One check of a secret, counted under each (log, key); raises `refused(seconds to
    wait)` instead while any of them is over its limit."""
    now = time.monotonic()
    waits = [w for log, key in keyed if (w := log.wait(key, now)) is not None]
    if waits:
        raise refused(max(waits))
    for log, key in keyed:
        log.begin(key)
    outcome = Attempt()
    try:
        yield outcome
    finally:
        now = time.monotonic()
        for log, key in keyed:
            log.end(key, outcome.failed, now)
