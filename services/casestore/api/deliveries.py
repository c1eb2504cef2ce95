"""The delivery log of outgoing webhooks: list, show every attempt, replay."""

from typing import Any, get_args

import asyncpg
from aiohttp import web

from services.casestore.api.params import invalid, path_uuid, query_choice, query_int, query_uuid
from services.casestore.errors import RecordNotFound
from services.casestore.repo import Conn
from services.casestore.repo import deliveries as delivery_rows
from services.casestore.repo import outbox as outbox_rows
from shared.events import (
    DELIVERY_REPLAY_REQUESTED,
    DeliveryReplayRequested,
    DeliveryState,
    new_event,
)
from shared.service import POOL
from shared.web import json_response

routes = web.RouteTableDef()
STATES: tuple[str, ...] = get_args(DeliveryState)


def delivery_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "automation_id": str(row["automation_id"]),
        "case_id": str(row["case_id"]), "form_id": row["form_id"],
        "event_id": str(row["event_id"]), "webhook_id": row["webhook_id"], "state": row["state"],
        "attempt_count": row["attempt_count"],
        "last_response_status": row["last_response_status"], "last_error": row["last_error"],
        "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
    }


def attempt_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "number": row["number"], "started_at": row["started_at"].isoformat(),
        "duration_ms": row["duration_ms"], "request": row["request"],
        "response_status": row["response_status"], "response_headers": row["response_headers"],
        "response_body": row["response_body"], "error": row["error"],
    }


async def _found(conn: Conn, request: web.Request) -> asyncpg.Record:
    row = await delivery_rows.get_delivery(conn, path_uuid(request, "delivery_id", "delivery"))
    if row is None:
        raise RecordNotFound("no delivery has that id")
    return row


@routes.get("/api/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first; filter by automation, case and state; page with `limit` and `before`.

    `before` is the previous page's `next_before` (the id of its last delivery).
    """
    limit = query_int(request, "limit", 50, 500) or 50
    automation, case = query_uuid(request, "automation"), query_uuid(request, "case")
    state = query_choice(request, "state", STATES)
    before_id = query_uuid(request, "before")
    async with request.app[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        before = None
        if before_id is not None:
            last = await delivery_rows.get_delivery(conn, before_id)
            if last is None:
                raise invalid("before", "no delivery has that id")
            before = (last["created_at"], last["id"])
        rows = await delivery_rows.list_deliveries(conn, automation_id=automation, case_id=case,
                                                   state=state, limit=limit, before=before)
    next_before = str(rows[-1]["id"]) if len(rows) == limit else None
    return json_response({"deliveries": [delivery_json(r) for r in rows],
                          "next_before": next_before})


@routes.get("/api/deliveries/{delivery_id}")
async def get_delivery(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        row = await _found(conn, request)
        attempts = await delivery_rows.delivery_attempts(conn, row["id"])
    return json_response({**delivery_json(row), "attempts": [attempt_json(a) for a in attempts]})


@routes.post("/api/deliveries/{delivery_id}/replay")
async def replay(request: web.Request) -> web.Response:
    """The dispatcher sends it again with the same webhook-id; the outcome lands in this log."""
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _found(conn, request)
        command = DeliveryReplayRequested(delivery_id=row["id"],
                                          automation_id=row["automation_id"],
                                          case_id=row["case_id"])
        await outbox_rows.insert_outbox(conn, [new_event(
            DELIVERY_REPLAY_REQUESTED, command, form_id=row["form_id"], case_id=row["case_id"])])
    return json_response({"delivery_id": str(row["id"]), "replay": "requested"}, status=202)
