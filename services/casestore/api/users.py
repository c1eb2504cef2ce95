"""Users who may obtain auth keys for authenticated incoming webhooks."""

import asyncio

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.casestore import repo
from services.casestore.api.webhooks import hasher
from services.casestore.errors import Conflict, RecordNotFound, ValidationFailed
from shared.forms import FieldError, Label
from shared.service import POOL
from shared.web import json_response, read_model

routes = web.RouteTableDef()


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Label
    password: str = Field(min_length=8, max_length=1024)
    forms: list[str] = Field(default_factory=list)


@routes.post("/api/users")
async def create_user(request: web.Request) -> web.Response:
    user = await read_model(request, NewUser)
    password_hash = await asyncio.to_thread(hasher.hash, user.password)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        try:
            await repo.insert_user(conn, user.username, password_hash, sorted(set(user.forms)))
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"user '{user.username}' already exists") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise ValidationFailed([FieldError(field="forms", code="invalid",
                                               message="every form must exist")]) from exc
    return json_response({"username": user.username, "forms": sorted(set(user.forms))},
                         status=201)


@routes.get("/api/users")
async def list_users(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        rows = await repo.list_users(conn)
    return json_response({"users": [
        {"username": r["username"], "forms": list(r["forms"]),
         "created_at": r["created_at"].isoformat()} for r in rows]})


@routes.delete("/api/users/{username}")
async def delete_user(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        if not await repo.delete_user(conn, request.match_info["username"]):
            raise RecordNotFound(f"user '{request.match_info['username']}' not found")
    return json_response({})
