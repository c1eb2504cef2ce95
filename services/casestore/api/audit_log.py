"""The audit log over the API: newest first, by actor or target, a page at a time; and the
changes made elsewhere (the CLI's dead-letter requeues and purges, on the broker) recorded."""

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.casestore import audit
from services.casestore.api.answers import AuditEntry, AuditLog, shown
from services.casestore.auth import actor_of, requires
from services.casestore.params import query_int
from services.casestore.repo import audit as audit_rows
from shared.bodies import read_model
from shared.openapi import Empty, Param, operation
from shared.service import POOL
from shared.web import json_response

routes = web.RouteTableDef()
MOST = 500


@routes.get("/api/audit-log")
@operation("Configuration changes, newest first: who, what, when, before and after (secrets "
           "masked); `before` an entry's id pages back", tags=("audit",),
           responses={200: AuditLog}, params=(
               Param("limit", {"type": "integer", "minimum": 1, "maximum": MOST}),
               Param("before", {"type": "integer", "minimum": 1}, "next_before of the previous "
                     "page"),
               Param("actor", {"type": "string"}, "an account's username, admin-token or system"),
               Param("target", {"type": "string"}, "the id of what changed")))
async def audit_log(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 100, MOST) or 100
    before = query_int(request, "before", None, 2**62)
    async with request.app[POOL].acquire() as conn:
        rows = await audit_rows.list_entries(conn, limit=limit + 1, before=before,
                                             actor=request.query.get("actor"),
                                             target=request.query.get("target"))
    page = rows[:limit]
    return json_response({"entries": [shown(AuditEntry, r) for r in page],
                          "next_before": page[-1].id if len(rows) > limit else None})


class ElsewhereChange(BaseModel):
    """A change Casewire made outside Postgres: the dead-letter queue, requeued or purged."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["dead_letters.requeued", "dead_letters.purged"]
    target_id: str = Field(min_length=1, max_length=255)  # the queue
    detail: dict[str, Any] = Field(default_factory=dict)  # e.g. {"count": 3, "ids": [...]}


@routes.post("/api/audit-log")
@requires("admin")
@operation("Record a change made on the broker (the CLI's dead-letter requeue or purge), with "
           "the caller as its actor (admin)", body=ElsewhereChange, tags=("audit",),
           responses={201: Empty})
async def record_elsewhere(request: web.Request) -> web.Response:
    change = await read_model(request, ElsewhereChange)
    async with request.app[POOL].acquire() as conn:
        await audit.record(conn, actor_of(request), change.action, "queue", change.target_id,
                           after=change.detail)
    return json_response({}, status=201)
