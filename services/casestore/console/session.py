"""Console sessions: a signed, expiring cookie, and the CSRF token derived from it.

No session is stored on the server. The cookie holds `expires.nonce.signature`, signed with a
key derived from CASEWIRE_SIGNING_KEY and the admin token, so changing either signs everyone
out. Each state-changing request carries the CSRF token, an HMAC of the session's nonce that a
page of another site cannot read (the cookie is HttpOnly and SameSite=Strict besides).
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from shared.bodies import read_form
from shared.inputs import is_text, same_secret, whole_number

COOKIE = "casewire_console"
SESSION_SECONDS = 8 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: when its cookie expires, and the token its forms carry."""

    expires: int
    csrf: str


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

    def issue(self, now: float | None = None) -> str:
        expires = int(now if now is not None else time.time()) + SESSION_SECONDS
        body = f"{expires}.{secrets.token_hex(16)}"
        return f"{body}.{_mac(self.key, body)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie stands for; None if it is missing, tampered with or expired."""
        if not cookie or cookie.count(".") != 2 or not is_text(cookie):
            return None
        expires, nonce, signature = cookie.split(".")
        if not same_secret(signature, _mac(self.key, f"{expires}.{nonce}")):
            return None
        until = whole_number(expires, 0, 2**63 - 1)
        if until is None or until <= (now if now is not None else time.time()):
            return None
        return Session(until, _mac(self.key, f"csrf.{nonce}"))


SESSION_KEYS = web.AppKey("console_session_keys", SessionKeys)


def set_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(COOKIE, value, max_age=SESSION_SECONDS, path="/console", httponly=True,
                        samesite="Strict", secure=request.secure)


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/console")


def current(request: web.Request) -> Session | None:
    return request.config_dict[SESSION_KEYS].read(request.cookies.get(COOKIE))


async def csrf_ok(request: web.Request, session: Session) -> bool:
    """The form field (or header) carries this session's CSRF token."""
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        value = (await read_form(request)).get(CSRF_FIELD)
        given = value if isinstance(value, str) else ""
    return same_secret(given, session.csrf)
