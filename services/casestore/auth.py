"""Who calls the admin API, and whether their role allows the route.

Every call under /api (but the public description) carries `Authorization: Bearer <token>`:
CASEWIRE_ADMIN_TOKEN (the bootstrap admin) or an account's API token (`cw_...`, looked up by
its SHA-256). The actor is kept on the request for the handlers and the audit log. A route
needs a viewer to read (GET, HEAD) and an editor to change anything, unless it is marked
`@requires(...)` otherwise; a request its actor's role does not allow is 403 `forbidden`.
The CLI may say it acted for someone (`X-Casewire-Via`), which the audit log notes.
"""

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from services.casestore.actors import Actor, Role, bootstrap_admin, role_of
from services.casestore.repo import accounts as account_rows
from shared.addresses import VIA_HEADER
from shared.service import POOL
from shared.web import Forbidden, Unauthorized

ACTOR = web.RequestKey("actor", Actor)
TOKEN_PREFIX = "cw_"  # noqa: S105 - how tokens begin, not a secret
READS = frozenset({"GET", "HEAD", "OPTIONS"})
H = TypeVar("H", bound=Callable[..., Any])
# A route's needed role, and whether the account named in its path may act on its own behalf.
_NEEDS: dict[Callable[..., Any], tuple[Role, bool]] = {}


def requires(role: Role, *, or_self: bool = False) -> Callable[[H], H]:
    """Mark a handler as needing `role` (or, with `or_self`, the account in its
    `{username}`)."""

    def mark(handler: H) -> H:
        _NEEDS[handler] = (role, or_self)
        return handler

    return mark


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def actor_of(request: web.Request) -> Actor:
    return request[ACTOR]


def _bearer(request: web.Request) -> str:
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme != "Bearer" or not token.isascii() or not token.isprintable():
        raise Unauthorized("missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    return token


async def _resolve(request: web.Request, admin_token: str) -> Actor:
    token = _bearer(request)
    if hmac.compare_digest(token.encode(), admin_token.encode()):
        return bootstrap_admin()
    if token.startswith(TOKEN_PREFIX):
        async with request.app[POOL].acquire() as conn:
            owner = await account_rows.token_owner(conn, token_hash(token))
            if owner is not None:
                if owner.stale:
                    await account_rows.touch_token(conn, owner.token_id)
                return Actor(owner.username, role_of(owner.role), f"api token {owner.prefix}…")
    raise Unauthorized("missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def allowed(actor: Actor, request: web.Request) -> bool:
    role, or_self = _NEEDS.get(request.match_info.handler,
                               ("viewer" if request.method in READS else "editor", False))
    if actor.may(role):
        return True
    return or_self and request.match_info.get("username") == actor.name


def middleware(admin_token: str, public: tuple[str, ...]) -> Any:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/") and not request.path.startswith(public):
            actor = await _resolve(request, admin_token)
            via = request.headers.get(VIA_HEADER, "")
            actor = actor.on_behalf(via[:100] if via.isprintable() else "")
            if not allowed(actor, request):
                raise Forbidden(f"{actor.role} may not {request.method} {request.path}")
            request[ACTOR] = actor
        return await handler(request)

    return authenticate
