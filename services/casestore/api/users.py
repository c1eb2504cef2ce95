"""Users who may obtain auth keys for authenticated incoming webhooks."""

from typing import Annotated

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.casestore.api.answers import User, UserList
from services.casestore.api.logins import LOGINS
from services.casestore.api.webhooks import hasher
from services.casestore.errors import Conflict, RecordNotFound, ValidationFailed
from services.casestore.repo import access as access_rows
from shared.bodies import read_model
from shared.forms import SLUG, FieldError, Label
from shared.openapi import Empty, errors, operation
from shared.service import POOL
from shared.web import json_response

routes = web.RouteTableDef()
FormId = Annotated[str, Field(pattern=SLUG)]
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Label
    password: Password
    forms: list[FormId] = Field(default_factory=list)


class UserChange(BaseModel):
    """The user's forms, replaced as a whole; a new password if given."""

    model_config = ConfigDict(extra="forbid")
    password: Password | None = None
    forms: list[FormId]


def _forms_must_exist() -> ValidationFailed:
    return ValidationFailed([FieldError(field="forms", code="invalid",
                                        message="every form must exist")])


@routes.post("/api/users")
@operation("Create a user who may obtain auth keys", body=NewUser, tags=("users",),
           responses={201: User, **errors(409, 503)})
async def create_user(request: web.Request) -> web.Response:
    user = await read_model(request, NewUser)
    password_hash = await request.app[LOGINS].hash(hasher.hash, user.password)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        try:
            await access_rows.insert_user(conn, user.username, password_hash,
                                          sorted(set(user.forms)))
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"user '{user.username}' already exists") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise _forms_must_exist() from exc
    return json_response({"username": user.username, "forms": sorted(set(user.forms))},
                         status=201)


@routes.put("/api/users/{username}")
@operation("Replace the user's forms; a new password revokes their auth keys",
           body=UserChange, tags=("users",), responses={200: User, **errors(503)})
async def change_user(request: web.Request) -> web.Response:
    """Applies at once: a key of the user stops working on a form taken away from them.

    A new password also revokes every auth key the user holds, as keys got with a leaked
    password must not outlive it.
    """
    username = request.match_info["username"]
    change = await read_model(request, UserChange)
    password_hash = (await request.app[LOGINS].hash(hasher.hash, change.password)
                     if change.password is not None else None)
    forms = sorted(set(change.forms))
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await access_rows.lock_user(conn, username):
            raise RecordNotFound(f"user '{username}' not found")
        try:
            await access_rows.set_user_forms(conn, username, forms)
        except asyncpg.ForeignKeyViolationError as exc:
            raise _forms_must_exist() from exc
        if password_hash is not None:
            await access_rows.set_password_hash(conn, username, password_hash)
            await access_rows.delete_all_auth_keys(conn, username)
    return json_response({"username": username, "forms": forms})


@routes.get("/api/users")
@operation("The users and their forms", tags=("users",), responses={200: UserList})
async def list_users(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        rows = await access_rows.list_users(conn)
    return json_response({"users": [r.to_api() for r in rows]})


@routes.delete("/api/users/{username}")
@operation("Remove the user and all their auth keys", tags=("users",),
           responses={200: Empty})
async def delete_user(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        if not await access_rows.delete_user(conn, request.match_info["username"]):
            raise RecordNotFound(f"user '{request.match_info['username']}' not found")
    return json_response({})
