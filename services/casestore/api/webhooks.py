"""The form's incoming webhook: enable, rotate its token, and auth keys for authenticated users."""

import asyncpg
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field

from services.casestore import webhook_signatures, webhook_tokens
from services.casestore.api.answers import AuthKey, Webhook
from services.casestore.api.forms import announce_form, load_form
from services.casestore.api.logins import LOGINS, client_address
from services.casestore.automations import SECRET_BOX
from services.casestore.errors import found
from services.casestore.repo import access as access_rows
from services.casestore.webhook_tokens import TOKEN_SEAL
from shared.bodies import read_model
from shared.incoming_signatures import Verification
from shared.openapi import Empty, errors, operation
from shared.secrets import digest, new_token
from shared.service import POOL, SETTINGS
from shared.web import BadRequest, json_response

routes = web.RouteTableDef()
NO_WEBHOOK = "this form has no incoming webhook"
hasher = PasswordHasher()


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    authenticate_user: bool = False
    # Beyond the seed: check who signed each request (null: no check). Left out, it stays.
    verify: Verification | None = None


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=1024)
    password: str = Field(max_length=1024)


def _shown(request: web.Request, row: access_rows.WebhookRow) -> dict[str, object]:
    return webhook_tokens.shown(request.app[TOKEN_SEAL], row,
                                request.app[SETTINGS].public_base_url)


@routes.get("/api/forms/{form_id}/incoming-webhook")
@operation("The form's incoming webhook: URL and settings", tags=("incoming webhook",),
           responses={200: Webhook})
async def get_webhook(request: web.Request) -> web.Response:
    return json_response(_shown(request, await _hook(request)))


@routes.put("/api/forms/{form_id}/incoming-webhook")
@operation("Enable or disable the webhook, user authentication on or off, how signatures are "
           "checked (keeps the token)",
           body=WebhookSettings, tags=("incoming webhook",), responses={200: Webhook})
async def put_webhook(request: web.Request) -> web.Response:
    body = await read_model(request, WebhookSettings)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        form = await load_form(conn, request.match_info["form_id"])
        row = await webhook_tokens.save(conn, request.app[TOKEN_SEAL], form.id, body.enabled,
                                        body.authenticate_user)
        if "verify" in body.model_fields_set:
            row = await webhook_signatures.set_verification(conn, request.app[SECRET_BOX], row,
                                                            body.verify)
        await announce_form(conn, form.id, "webhook")
    return json_response(_shown(request, row))


@routes.post("/api/forms/{form_id}/incoming-webhook/rotate")
@operation("A new token: the old URL answers 404 from then on", tags=("incoming webhook",),
           responses={200: Webhook})
async def rotate_token(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = found(await webhook_tokens.rotate(
            conn, request.app[TOKEN_SEAL], request.match_info["form_id"]), NO_WEBHOOK)
        await announce_form(conn, row.form_id, "webhook")
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
    key = new_token(32)
    async with request.app[POOL].acquire() as conn:
        try:
            await access_rows.insert_auth_key(conn, digest(key), creds.username, hook.id)
        except asyncpg.ForeignKeyViolationError as exc:
            # The user or the webhook was deleted meanwhile.
            raise access_denied() from exc
    return json_response({"auth_key": key})


@routes.delete("/api/forms/{form_id}/incoming-webhook/auth-keys")
@operation("Revoke every auth key of a user on this webhook", body=Credentials,
           tags=("incoming webhook",), responses={200: Empty, **errors(429, 503)})
async def revoke_auth_keys(request: web.Request) -> web.Response:
    creds, hook = await _allowed_user(request)
    async with request.app[POOL].acquire() as conn:
        await access_rows.delete_auth_keys(conn, creds.username, hook.id)
    return json_response({})
