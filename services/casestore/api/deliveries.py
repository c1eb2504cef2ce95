"""The delivery log of outgoing webhooks: list, show every attempt, replay."""

from typing import get_args

from aiohttp import web

from services.casestore.api.params import invalid, path_uuid, query_choice, query_int, query_uuid
from services.casestore.errors import found
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


async def _delivery(conn: Conn, request: web.Request) -> delivery_rows.DeliveryRow:
    row = await delivery_rows.get_delivery(conn, path_uuid(request, "delivery_id", "delivery"))
    return found(row, "no delivery has that id")


async def _page_after(conn: Conn, request: web.Request) -> delivery_rows.DeliveryRow | None:
    """The previous page's last delivery, which `before` names."""
    before_id = query_uuid(request, "before")
    if before_id is None:
        return None
    last = await delivery_rows.get_delivery(conn, before_id)
    if last is None:
        raise invalid("before", "no delivery has that id")
    return last


@routes.get("/api/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first; filter by automation, case and state; page with `limit` and `before`.

    `before` is the previous page's `next_before` (the id of its last delivery).
    """
    limit = query_int(request, "limit", 50, 500) or 50
    automation, case = query_uuid(request, "automation"), query_uuid(request, "case")
    state = query_choice(request, "state", STATES)
    async with request.app[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        before = await _page_after(conn, request)
        rows = await delivery_rows.list_deliveries(conn, automation_id=automation, case_id=case,
                                                   state=state, limit=limit, before=before)
    next_before = str(rows[-1].id) if len(rows) == limit else None
    return json_response({"deliveries": [r.to_api() for r in rows], "next_before": next_before})


@routes.get("/api/deliveries/{delivery_id}")
async def get_delivery(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        row = await _delivery(conn, request)
        attempts = await delivery_rows.delivery_attempts(conn, row.id)
    return json_response({**row.to_api(), "attempts": [a.to_api() for a in attempts]})


@routes.post("/api/deliveries/{delivery_id}/replay")
async def replay(request: web.Request) -> web.Response:
    """The dispatcher sends it again with the same webhook-id; the outcome lands in this log."""
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _delivery(conn, request)
        command = DeliveryReplayRequested(delivery_id=row.id, automation_id=row.automation_id,
                                          case_id=row.case_id)
        await outbox_rows.insert_outbox(conn, [new_event(
            DELIVERY_REPLAY_REQUESTED, command, form_id=row.form_id, case_id=row.case_id)])
    return json_response({"delivery_id": str(row.id), "replay": "requested"}, status=202)
