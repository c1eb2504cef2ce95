"""Accounts and their API tokens: admins manage them; an account may manage its own tokens.

Never the last admin: an admin account cannot be deleted, disabled or given another role while
it is the only enabled one (the bootstrap admin token is for getting started, not a standing
second admin).
"""

import secrets
import uuid
from typing import Annotated

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.casestore import audit
from services.casestore.actors import RESERVED, Actor, Role
from services.casestore.api.answers import Account, AccountList, NewToken, Token, TokenList, shown
from services.casestore.auth import TOKEN_PREFIX, actor_of, requires, token_hash
from services.casestore.errors import Conflict, ValidationFailed, found
from services.casestore.logins import LOGINS, hasher
from services.casestore.params import path_uuid
from services.casestore.repo import Conn
from services.casestore.repo import accounts as account_rows
from shared.bodies import read_model
from shared.forms import FieldError
from shared.openapi import Empty, errors, operation
from shared.service import POOL
from shared.web import json_response

routes = web.RouteTableDef()
Username = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Password = Annotated[str, Field(min_length=12, max_length=1024)]
TokenName = Annotated[str, Field(min_length=1, max_length=100)]


class NewAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    role: Role
    password: Password | None = None  # none: API tokens only


class AccountChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    password: Password | None = None
    disabled: bool | None = None


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: TokenName
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


def _missing(username: str) -> str:
    return f"account '{username}' not found"


async def _hash(request: web.Request, password: str | None) -> str | None:
    return None if password is None else await request.app[LOGINS].hash(hasher.hash, password)


@routes.post("/api/accounts")
@requires("admin")
@operation("Create an account (admin)", body=NewAccount, tags=("accounts",),
           responses={201: Account, **errors(409)})
async def create_account(request: web.Request) -> web.Response:
    new = await read_model(request, NewAccount)
    if new.username in RESERVED:
        raise ValidationFailed([FieldError(field="username", code="invalid",
                                           message=f"'{new.username}' is reserved")])
    password_hash = await _hash(request, new.password)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        try:
            row = await account_rows.insert_account(conn, new.username, new.role, password_hash)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"account '{new.username}' already exists") from exc
        await audit.record(conn, actor_of(request), "account.created", "account", row.username,
                           after=shown(Account, row))
    return json_response(shown(Account, row), status=201)


@routes.get("/api/accounts")
@requires("admin")
@operation("List the accounts (admin)", tags=("accounts",), responses={200: AccountList})
async def list_accounts(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        rows = await account_rows.list_accounts(conn)
    return json_response({"accounts": [shown(Account, r) for r in rows]})


@routes.get("/api/accounts/{username}")
@requires("admin", or_self=True)
@operation("One account (admin, or the account itself)", tags=("accounts",),
           responses={200: Account})
async def get_account(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    async with request.app[POOL].acquire() as conn:
        row = found(await account_rows.get_account(conn, username), _missing(username))
    return json_response(shown(Account, row))


async def _keep_an_admin(conn: Conn, row: account_rows.AccountRow, change: AccountChange) -> None:
    """Refuse a change that would leave no enabled admin account."""
    loses_admin = row.role == "admin" and row.disabled_at is None and (
        (change.role is not None and change.role != "admin") or change.disabled is True)
    if loses_admin and not await account_rows.other_enabled_admins(conn, row.username):
        raise Conflict(f"'{row.username}' is the last enabled admin")


@routes.patch("/api/accounts/{username}")
@requires("admin")
@operation("Change an account's role or password, or disable or enable it (admin)",
           body=AccountChange, tags=("accounts",), responses={200: Account, **errors(409)})
async def change_account(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    change = await read_model(request, AccountChange)
    password_hash = await _hash(request, change.password)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        before = found(await account_rows.get_account(conn, username, lock=True),
                       _missing(username))
        await _keep_an_admin(conn, before, change)
        after = await account_rows.update_account(
            conn, username, role=change.role, password_hash=password_hash,
            disabled=change.disabled)
        await audit.record(conn, actor_of(request), "account.updated", "account", username,
                           before=shown(Account, before),
                           after={**shown(Account, after), **({"password": "new"} if change.password
                                                       else {})})
    return json_response(shown(Account, after))


@routes.delete("/api/accounts/{username}")
@requires("admin")
@operation("Delete an account and its tokens (admin); never the last admin",
           tags=("accounts",), responses={200: Empty, **errors(409)})
async def delete_account(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        before = found(await account_rows.get_account(conn, username, lock=True),
                       _missing(username))
        await _keep_an_admin(conn, before, AccountChange(disabled=True))
        await account_rows.delete_account(conn, username)
        await audit.record(conn, actor_of(request), "account.deleted", "account", username,
                           before=shown(Account, before))
    return json_response({})


async def _account_for_tokens(conn: Conn, username: str) -> None:
    found(await account_rows.get_account(conn, username), _missing(username))


@routes.post("/api/accounts/{username}/tokens")
@requires("admin", or_self=True)
@operation("Make an API token for the account; the answer is the only time it is shown",
           body=TokenRequest, tags=("accounts",), responses={201: NewToken, **errors(409)})
async def create_token(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    asked = await read_model(request, TokenRequest)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await _account_for_tokens(conn, username)
        try:
            row = await account_rows.insert_token(conn, username, asked.name, token[:11],
                                                  token_hash(token), asked.expires_in_days)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"'{username}' has a token named '{asked.name}' already") from exc
        await audit.record(conn, actor_of(request), "token.created", "token", str(row.id),
                           after=shown(Token, row))
    return json_response({**shown(Token, row), "token": token}, status=201)


@routes.get("/api/accounts/{username}/tokens")
@requires("admin", or_self=True)
@operation("The account's API tokens: name, prefix, last use (never the token)",
           tags=("accounts",), responses={200: TokenList})
async def list_tokens(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    async with request.app[POOL].acquire() as conn:
        await _account_for_tokens(conn, username)
        rows = await account_rows.list_tokens(conn, username)
    return json_response({"tokens": [shown(Token, r) for r in rows]})


@routes.delete("/api/accounts/{username}/tokens/{token_id}")
@requires("admin", or_self=True)
@operation("Revoke an API token", tags=("accounts",), responses={200: Empty})
async def revoke_token(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    token_id: uuid.UUID = path_uuid(request, "token_id", "token")
    actor: Actor = actor_of(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = found(await account_rows.revoke_token(conn, username, token_id),
                    "no token has that id")
        await audit.record(conn, actor, "token.revoked", "token", str(row.id),
                           after=shown(Token, row))
    return json_response({})
