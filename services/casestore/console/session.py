"""Console sessions: a signed, expiring cookie, and the CSRF token derived from it.

The cookie holds `expires.nonce.who.signature` (who: the account signed in, hex; empty for the
admin token), signed with a key derived from CASEWIRE_SIGNING_KEY and the admin token, so
changing either signs everyone out. The account's role is read on every request (the guard in
app.py), so a changed role or a disabled account applies at once. Signing out records the nonce
(as its SHA-256, until the cookie would expire: repo/sessions.py), and every request is
checked against that record, so a copy of the cookie stops working too. Each state-changing
request carries the CSRF token, an HMAC of the session's nonce that a page of another site
cannot read (the cookie is HttpOnly and SameSite=Strict besides, and Secure over HTTPS).
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from services.casestore.repo import sessions as session_rows
from shared.bodies import read_form
from shared.clients import PROXIES
from shared.inputs import is_text, same_secret, whole_number
from shared.service import POOL

COOKIE = "casewire_console"
SESSION_SECONDS = 8 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: when its cookie expires, the token its forms carry, and what a
    sign-out records of it."""

    expires: int
    csrf: str
    nonce_hash: bytes
    username: str | None = None  # None: signed in with the admin token

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires, UTC)


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """Issues and checks session cookies; built once per app from the two secrets."""

    key: bytes
    admin_token: str

    @classmethod
    def derive(cls, signing_key: str, admin_token: str) -> "SessionKeys":
        key = hmac.new(signing_key.encode(), b"casewire-console-session\x00" + admin_token.encode(),
                       hashlib.sha256).digest()
        return cls(key, admin_token)

    def token_ok(self, given: str) -> bool:
        """Is this the admin token? Compared in constant time."""
        return same_secret(given.strip(), self.admin_token)

    def issue(self, username: str | None = None, now: float | None = None) -> str:
        expires = int(now if now is not None else time.time()) + SESSION_SECONDS
        body = f"{expires}.{secrets.token_hex(16)}.{(username or '').encode().hex()}"
        return f"{body}.{_mac(self.key, body)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie stands for; None if it is missing, tampered with or expired."""
        if not cookie or cookie.count(".") != 3 or not is_text(cookie):
            return None
        expires, nonce, who, signature = cookie.split(".")
        if not same_secret(signature, _mac(self.key, f"{expires}.{nonce}.{who}")):
            return None
        until = whole_number(expires, 0, 2**63 - 1)
        if until is None or until <= (now if now is not None else time.time()):
            return None
        return Session(until, _mac(self.key, f"csrf.{nonce}"),
                       hashlib.sha256(nonce.encode()).digest(),
                       bytes.fromhex(who).decode() if who else None)


SESSION_KEYS = web.AppKey("console_session_keys", SessionKeys)
# The request's session, once the console's guard has checked it (None: signed out).
SESSION: web.RequestKey[Session | None] = web.RequestKey("console_session")


def set_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(COOKIE, value, max_age=SESSION_SECONDS, path="/console", httponly=True,
                        samesite="Strict", secure=request.config_dict[PROXIES].secure(request))


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/console")


async def active(request: web.Request) -> Session | None:
    """The request's session: a valid cookie whose session has not signed out."""
    session = request.config_dict[SESSION_KEYS].read(request.cookies.get(COOKIE))
    if session is None:
        return None
    async with request.config_dict[POOL].acquire() as conn:
        ended = await session_rows.has_ended(conn, session.nonce_hash)
    return None if ended else session


def current(request: web.Request) -> Session | None:
    """The session the guard found for this request."""
    return request.get(SESSION)


async def end(request: web.Request, session: Session) -> None:
    """Sign out on the server: this session's cookie, and any copy of it, is refused."""
    async with request.config_dict[POOL].acquire() as conn:
        await session_rows.end(conn, session.nonce_hash, session.expires_at)


async def csrf_ok(request: web.Request, session: Session) -> bool:
    """The form field (or header) carries this session's CSRF token."""
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        value = (await read_form(request)).get(CSRF_FIELD)
        given = value if isinstance(value, str) else ""
    return same_secret(given, session.csrf)
