"""The form's incoming webhook: enable, rotate its token, and auth keys for authenticated users."""

import asyncpg
from aiohttp import web
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field

from services.casestore import webhook_writes
from services.casestore.api.answers import AuthKey, Webhook
from services.casestore.auth import actor_of
from services.casestore.errors import found
from services.casestore.logins import LOGINS, client_address, hasher
from services.casestore.repo import access as access_rows
from services.casestore.webhook_writes import NO_WEBHOOK, WebhookKeys, WebhookSettings
from shared.bodies import read_model
from shared.openapi import Empty, errors, operation
from shared.service import POOL
from shared.web import BadRequest, json_response

routes = web.RouteTableDef()


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=1024)
    password: str = Field(max_length=1024)


def _shown(request: web.Request, row: access_rows.WebhookRow) -> dict[str, object]:
    """A viewer sees "***" for the token (in the URL too) and the signing secret."""
    return webhook_writes.shown(WebhookKeys.of(request), row,
                                secrets=actor_of(request).sees_secrets)


@routes.get("/api/forms/{form_id}/incoming-webhook")
@operation("The form's incoming webhook: URL and settings (a viewer sees its token and "
           "signing secret as ***)", tags=("incoming webhook",), responses={200: Webhook})
async def get_webhook(request: web.Request) -> web.Response:
    return json_response(_shown(request, await _hook(request)))


@routes.put("/api/forms/{form_id}/incoming-webhook")
@operation("Enable or disable the webhook, user authentication on or off, how signatures are "
           "checked (keeps the token)",
           body=WebhookSettings, tags=("incoming webhook",), responses={200: Webhook})
async def put_webhook(request: web.Request) -> web.Response:
    body = await read_model(request, WebhookSettings)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await webhook_writes.save(conn, actor_of(request), WebhookKeys.of(request),
                                        request.match_info["form_id"], body)
    return json_response(_shown(request, row))


@routes.post("/api/forms/{form_id}/incoming-webhook/rotate")
@operation("A new token: the old URL answers 404 from then on", tags=("incoming webhook",),
           responses={200: Webhook})
async def rotate_token(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await webhook_writes.rotate(conn, actor_of(request), WebhookKeys.of(request),
                                          request.match_info["form_id"])
    return json_response(_shown(request, row))


async def _password_ok(request: web.Request, creds: Credentials) -> bool:
    """Hashing happens with no database connection held: a flood must not drain the pool."""
    pool, guard = request.app[POOL], request.app[LOGINS]
    # No username holds a NUL (Postgres text cannot), and the query would fail on it.
    if "\x00" in creds.username:
        stored = None
    else:
        async with pool.acquire() as conn:
            stored = await access_rows.get_password_hash(conn, creds.username)
    if stored is None:
        # Hash anyway so an unknown username takes as long as a wrong password.
        await guard.hash(hasher.hash, creds.password)
        return False
    try:
        await guard.hash(hasher.verify, stored, creds.password)
    except (VerificationError, InvalidHashError):
        return False
    if hasher.check_needs_rehash(stored):
        rehashed = await guard.hash(hasher.hash, creds.password)
        async with pool.acquire() as conn:
            await access_rows.set_password_hash(conn, creds.username, rehashed)
    return True


async def _credentials_ok(request: web.Request, creds: Credentials, form_id: str) -> bool:
    """True if the password matches and the user may register cases in this form.

    Raises TooManyFailures (429) while this username or client address is over its limit.
    """
    with request.app[LOGINS].attempt(creds.username, client_address(request)) as attempt:
        attempt.failed = not await _password_ok(request, creds)
    if attempt.failed:
        return False
    async with request.app[POOL].acquire() as conn:
        return await access_rows.user_may_register(conn, creds.username, form_id)


def access_denied() -> BadRequest:
    return BadRequest.one("access_deny", "wrong username or password, or the user may not "
                          "register cases in this form")


async def _hook(request: web.Request) -> access_rows.WebhookRow:
    async with request.app[POOL].acquire() as conn:
        hook = await access_rows.get_webhook(conn, request.match_info["form_id"])
    return found(hook, NO_WEBHOOK)


async def _allowed_user(request: web.Request) -> tuple[Credentials, access_rows.WebhookRow]:
    """The credentials in the body and the form's webhook, once they prove the user may
    register cases in the form; 400 access_deny if they do not."""
    creds = await read_model(request, Credentials)
    hook = await _hook(request)
    if not await _credentials_ok(request, creds, hook.form_id):
        raise access_denied()
    return creds, hook


@routes.post("/api/forms/{form_id}/incoming-webhook/auth-keys")
@operation("Issue an auth key for a user (what ingest forwards credentials to)",
           body=Credentials, tags=("incoming webhook",),
           responses={200: AuthKey, **errors(429, 503)})
async def issue_auth_key(request: web.Request) -> web.Response:
    """What `POST /hooks/{token}` with username and password is forwarded to."""
    creds, hook = await _allowed_user(request)
    try:
        async with request.app[POOL].acquire() as conn, conn.transaction():
            key = await webhook_writes.issue_auth_key(conn, actor_of(request), hook,
                                                      creds.username)
    except asyncpg.ForeignKeyViolationError as exc:
        # The user or the webhook was deleted meanwhile.
        raise access_denied() from exc
    return json_response({"auth_key": key})


@routes.delete("/api/forms/{form_id}/incoming-webhook/auth-keys")
@operation("Revoke every auth key of a user on this webhook", body=Credentials,
           tags=("incoming webhook",), responses={200: Empty, **errors(429, 503)})
async def revoke_auth_keys(request: web.Request) -> web.Response:
    creds, hook = await _allowed_user(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await webhook_writes.revoke_auth_keys(conn, actor_of(request), hook, creds.username)
    return json_response({})
