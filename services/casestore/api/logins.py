"""Password checks under a guessing flood: failures throttled, argon2 hashing bounded.

Every argon2 hash takes 64 MiB and a core for a fifth of a second, so unbounded guessing
starves the admin API and real users and grows the process by hundreds of MiB. Failed logins
are limited per username and per client address (a check still running counts against the
limit, so a burst of concurrent guesses cannot slip past it), and at most a few hashes run
at once; a request that cannot get a hashing slot in time is turned away.
"""

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from shared.addresses import CLIENT_HEADER, parse_address
from shared.settings import Settings
from shared.web import RateLimited, Unavailable

T = TypeVar("T")
WINDOW_SECONDS = 60.0
# Past this many tracked names or addresses, stale entries are swept (and, in a flood from
# very many sources, the oldest dropped), so the guard's own memory stays bounded.
MAX_KEYS = 50_000


class TooManyFailures(RateLimited):
    """Too many failed logins for this username or address; retry after `retry_after` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed logins for this user or client address; wait and "
                         "try again", retry_after)


class HashingBusy(Unavailable):
    """No password-hashing slot came free in time."""

    def __init__(self) -> None:
        super().__init__("too many password checks at once; try again")


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


@dataclass
class Attempt:
    """Set `failed` once the password proved wrong; an error is no wrong guess."""

    failed: bool = False


class LoginGuard:
    def __init__(self, settings: Settings) -> None:
        self.users = FailureLog(settings.login_failures_per_user_per_minute)
        self.addresses = FailureLog(settings.login_failures_per_address_per_minute)
        self._slots = asyncio.Semaphore(settings.password_hash_concurrency)
        self._wait = settings.password_hash_wait_seconds

    @contextmanager
    def attempt(self, username: str, address: str) -> Iterator[Attempt]:
        """One password check; raises TooManyFailures instead if either key is over its limit."""
        now = time.monotonic()
        waits = [w for w in (self.users.wait(username, now), self.addresses.wait(address, now))
                 if w is not None]
        if waits:
            raise TooManyFailures(max(waits))
        self.users.begin(username)
        self.addresses.begin(address)
        outcome = Attempt()
        try:
            yield outcome
        finally:
            now = time.monotonic()
            self.users.end(username, outcome.failed, now)
            self.addresses.end(address, outcome.failed, now)

    async def hash(self, work: Callable[..., T], *args: str) -> T:
        """Run one argon2 call in a thread once a slot is free; HashingBusy if none comes."""
        try:
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise HashingBusy from exc
        try:
            return await asyncio.to_thread(work, *args)
        finally:
            self._slots.release()


LOGINS = web.AppKey("logins", LoginGuard)


def client_address(request: web.Request) -> str:
    """Who is guessing: ingest names the webhook's client; else whoever called casestore.

    The header is believed only because every /api call carries the admin token.
    """
    given = request.headers.get(CLIENT_HEADER, "")
    if parse_address(given) is not None:
        return given
    return request.remote or "unknown"
