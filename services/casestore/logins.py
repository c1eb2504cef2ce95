"""Password checks under a guessing flood: failures throttled, argon2 hashing bounded.

Every argon2 hash takes 64 MiB and a core for a fifth of a second, so unbounded guessing
starves the admin API and real users and grows the process by hundreds of MiB. Failed logins
are limited per username and per client address (a check still running counts against the
limit, so a burst of concurrent guesses cannot slip past it), and at most a few hashes run
at once; a request that cannot get a hashing slot in time is turned away.
"""

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

from aiohttp import web
from argon2 import PasswordHasher

from services.casestore.throttle import Attempt, FailureLog, attempt
from shared.addresses import CLIENT_HEADER, parse_address
from shared.clients import PROXIES
from shared.settings import Settings
from shared.web import RateLimited, Unavailable

T = TypeVar("T")

# argon2 with its defaults: every password of webhook users and accounts.
hasher = PasswordHasher()


class TooManyFailures(RateLimited):
    """Too many failed logins for this username or address; retry after `retry_after` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed logins for this user or client address; wait and "
                         "try again", retry_after)


class HashingBusy(Unavailable):
    """No password-hashing slot came free in time."""

    def __init__(self) -> None:
        super().__init__("too many password checks at once; try again")


class LoginGuard:
    def __init__(self, settings: Settings) -> None:
        self.users = FailureLog(settings.login_failures_per_user_per_minute)
        self.addresses = FailureLog(settings.login_failures_per_address_per_minute)
        self._slots = asyncio.Semaphore(settings.password_hash_concurrency)
        self._wait = settings.password_hash_wait_seconds

    def attempt(self, username: str, address: str) -> AbstractContextManager[Attempt]:
        """One password check; raises TooManyFailures instead if either key is over its limit."""
        return attempt([(self.users, username), (self.addresses, address)], TooManyFailures)

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
    """Who is guessing: ingest names the webhook's client; else whoever called casestore
    (through trusted proxies, shared.clients).

    The header is believed only because every /api call carries the admin token.
    """
    given = request.headers.get(CLIENT_HEADER, "")
    if parse_address(given) is not None:
        return given
    return request.app[PROXIES].client(request)
