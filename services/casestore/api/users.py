"""Users who may obtain auth keys for authenticated incoming webhooks."""


from aiohttp import web
from pydantic import BaseModel, ConfigDict

from services.casestore import webhook_writes
from services.casestore.api.answers import User, UserList
from services.casestore.auth import actor_of
from services.casestore.logins import LOGINS, hasher
from services.casestore.repo import access as access_rows
from services.casestore.webhook_writes import FormId, NewUser, Password
from shared.bodies import read_model
from shared.openapi import Empty, errors, operation
from shared.service import POOL
from shared.web import json_response

routes = web.RouteTableDef()
class UserChange(BaseModel):
    """The user's forms, replaced as a whole; a new password if given."""

    model_config = ConfigDict(extra="forbid")
    password: Password | None = None
    forms: list[FormId]


@routes.post("/api/users")
@operation("Create a user who may obtain auth keys", body=NewUser, tags=("users",),
           responses={201: User, **errors(409, 503)})
async def create_user(request: web.Request) -> web.Response:
    user = await read_model(request, NewUser)
    password_hash = await request.app[LOGINS].hash(hasher.hash, user.password)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        forms = await webhook_writes.create_user(conn, actor_of(request), user.username,
                                                 password_hash, user.forms)
    return json_response({"username": user.username, "forms": forms}, status=201)


@routes.put("/api/users/{username}")
@operation("Replace the user's forms; a new password revokes their auth keys",
           body=UserChange, tags=("users",), responses={200: User, **errors(503)})
async def change_user(request: web.Request) -> web.Response:
    """Applies at once: a key of the user stops working on a form taken away from them."""
    username = request.match_info["username"]
    change = await read_model(request, UserChange)
    password_hash = (await request.app[LOGINS].hash(hasher.hash, change.password)
                     if change.password is not None else None)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        forms = await webhook_writes.change_user(conn, actor_of(request), username,
                                                 change.forms, password_hash)
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
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await webhook_writes.delete_user(conn, actor_of(request), request.match_info["username"])
    return json_response({})
