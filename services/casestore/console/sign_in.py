"""Signing in to the console, as an account (username and password, argon2) or with the
admin token (the bootstrap admin), and signing out.

Every wrong password or token is logged (`console_sign_in_failed`, with the client's address, read
through trusted proxies) and counted, per client address and from everyone, over the last
minute (CASEWIRE_CONSOLE_SIGN_IN_FAILURES_PER_ADDRESS_PER_MINUTE, ..._PER_MINUTE). Past either
limit every sign-in, the right token's too, is answered 429 with Retry-After until the minute
has room again: guessing at 1,300 tokens a second becomes ten a minute from one address and a
hundred from all. Signing out ends the session on the server (session.end), not just in the
browser.
"""

import functools
from contextlib import AbstractContextManager

import structlog
from aiohttp import web
from argon2.exceptions import InvalidHashError, VerificationError

from services.casestore.auth import requires
from services.casestore.console.render import page, see_other, text
from services.casestore.console.session import (
    SESSION_KEYS,
    clear_cookie,
    current,
    end,
    set_cookie,
)
from services.casestore.logins import LOGINS, hasher
from services.casestore.repo import accounts as account_rows
from services.casestore.throttle import Attempt, FailureLog, attempt
from shared.bodies import read_form
from shared.clients import PROXIES
from shared.service import POOL
from shared.settings import Settings
from shared.web import RateLimited

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()
PREFIX = "/console"
EVERYONE = "*"


@functools.cache
def _unknown_account_hash() -> str:
    """Verified against when no such account exists, so that a wrong name costs what a wrong
    password does."""
    return hasher.hash("no account has this password")


class TooManySignIns(RateLimited):
    """Too many wrong passwords or admin tokens from this address, or from everyone."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many wrong sign-ins lately; wait and try again", retry_after)


class SignIns:
    """Wrong admin tokens within the last minute, per client address and from everyone."""

    def __init__(self, settings: Settings) -> None:
        self.addresses = FailureLog(settings.console_sign_in_failures_per_address_per_minute)
        self.everyone = FailureLog(settings.console_sign_in_failures_per_minute)

    def attempt(self, address: str) -> AbstractContextManager[Attempt]:
        return attempt([(self.addresses, address), (self.everyone, EVERYONE)], TooManySignIns)


SIGN_INS = web.AppKey("console_sign_ins", SignIns)


def next_page(raw: str) -> str:
    """Only a console page (never another site) may follow the sign-in."""
    ok = raw.startswith(f"{PREFIX}/") and not raw.startswith("//") and "\\" not in raw
    return raw if ok else f"{PREFIX}/"


@routes.get("")
async def to_home(_: web.Request) -> web.Response:
    """`/console` itself: the home page is `/console/`."""
    raise web.HTTPSeeOther(f"{PREFIX}/")


@routes.get("/sign-in")
async def sign_in_page(request: web.Request) -> web.Response:
    return page(request, "sign_in.html", next=next_page(request.query.get("next", "")))


async def _password_ok(request: web.Request, username: str, password: str) -> bool:
    """The account exists, is enabled, has a password, and this is it (argon2, off the event
    loop; an unknown name costs the same hash, so the answer's time tells nothing)."""
    async with request.config_dict[POOL].acquire() as conn:
        found = await account_rows.password_hash(conn, username)
    stored = found[1] if found is not None else _unknown_account_hash()
    try:
        await request.config_dict[LOGINS].hash(hasher.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return False
    return found is not None


@routes.post("/sign-in")
async def sign_in(request: web.Request) -> web.Response:
    posted = await read_form(request)
    keys, address = request.config_dict[SESSION_KEYS], request.config_dict[PROXIES].client(request)
    sign_ins = request.config_dict[SIGN_INS]
    username, secret = text(posted, "username").strip().lower(), text(posted, "token")
    with sign_ins.attempt(address) as tried:
        tried.failed = not (await _password_ok(request, username, secret) if username
                            else keys.token_ok(secret))
    if tried.failed:
        log.warning("console_sign_in_failed", client=address, username=username or None,
                    failures_from_client=sign_ins.addresses.failures(address),
                    failures_from_everyone=sign_ins.everyone.failures(EVERYONE))
        return page(request, "sign_in.html", status=401, next=next_page(text(posted, "next")),
                    username=username, error="That is not the password of that account."
                    if username else "That is not the admin token.")
    log.info("console_signed_in", client=address, username=username or None)
    response = see_other(next_page(text(posted, "next")))
    set_cookie(request, response, keys.issue(username or None))
    raise response


@routes.post("/sign-out")
@requires("viewer")  # everyone may leave
async def sign_out(request: web.Request) -> web.Response:
    """The guard let this through only with a session and its CSRF token."""
    session = current(request)
    if session is not None:
        await end(request, session)
    response = see_other(f"{PREFIX}/sign-in", notice="signed_out")
    clear_cookie(response)
    raise response
