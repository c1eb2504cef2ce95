"""The delivery log of outgoing webhooks: list, show every attempt, replay."""

import uuid
from collections.abc import Mapping
from typing import Any, get_args

import asyncpg
from aiohttp import web

from services.casestore import repo, schedule_rows
from services.casestore.api.params import invalid, path_uuid, query_int, query_time, query_uuid
from services.casestore.errors import Conflict, RecordNotFound
from shared.events import DeliveryState
from shared.service import POOL
from shared.web import json_response, read_json

routes = web.RouteTableDef()
STATES: tuple[str, ...] = get_args(DeliveryState)
WAITING = ("pending", "sending", "retrying")


def delivery_json(row: asyncpg.Record) -> dict[str, Any]:
    next_at = row["next_attempt_at"]
    return {
        "id": str(row["id"]), "automation_id": str(row["automation_id"]),
        "automation_name": row["automation_name"],
        "case_id": str(row["case_id"]), "form_id": row["form_id"],
        "event_id": str(row["event_id"]), "webhook_id": row["webhook_id"], "state": row["state"],
        "schedule": row["schedule"], "attempt_count": row["attempt_count"],
        "attempts_allowed": row["attempts_allowed"],
        "next_attempt_at": next_at.isoformat() if next_at and row["state"] in WAITING else None,
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


async def _found(conn: repo.Conn, request: web.Request) -> asyncpg.Record:
    row = await repo.get_delivery(conn, path_uuid(request, "delivery_id", "delivery"))
    if row is None:
        raise RecordNotFound("no delivery has that id")
    return row


def delivery_filter(request: web.Request, query: Mapping[str, str],
                    automation: uuid.UUID | None = None) -> repo.DeliveryFilter:
    """`automation`, `case`, `state` (one or several, comma separated), `since`, `until`."""
    states = None
    if query.get("state"):
        states = tuple(query["state"].split(","))
        if not set(states) <= set(STATES):
            raise invalid("state", f"expected one or more of: {', '.join(STATES)}")
    return repo.DeliveryFilter(
        automation_id=automation or query_uuid(request, "automation"),
        case_id=query_uuid(request, "case"), states=states,
        since=query_time(query, "since"), until=query_time(query, "until"))


@routes.get("/api/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first; filter by automation, case, state and time; page with `limit`, `before`.

    `before` is the previous page's `next_before` (the id of its last delivery).
    """
    limit = query_int(request, "limit", 50, 500) or 50
    where = delivery_filter(request, request.query)
    before_id = query_uuid(request, "before")
    async with request.app[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        before = None
        if before_id is not None:
            last = await repo.get_delivery(conn, before_id)
            if last is None:
                raise invalid("before", "no delivery has that id")
            before = (last["created_at"], last["id"])
        rows = await repo.list_deliveries(conn, where, limit=limit, before=before)
    next_before = str(rows[-1]["id"]) if len(rows) == limit else None
    return json_response({"deliveries": [delivery_json(r) for r in rows],
                          "next_before": next_before})


@routes.get("/api/deliveries/{delivery_id}")
async def get_delivery(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        row = await _found(conn, request)
        attempts = await repo.delivery_attempts(conn, row["id"])
    return json_response({**delivery_json(row), "attempts": [attempt_json(a) for a in attempts]})


@routes.post("/api/deliveries/{delivery_id}/replay")
async def replay(request: web.Request) -> web.Response:
    """Sent again with the same webhook-id, through the endpoint's cap; the attempts land here."""
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _found(conn, request)
        if row["state"] in WAITING:
            raise Conflict("the delivery is still on its way; replay it once it has finished")
        replayed = await repo.replay_deliveries(conn, repo.DeliveryFilter(delivery_id=row["id"]))
        if not replayed:
            raise Conflict("its automation no longer exists")
        await schedule_rows.wake_scheduler(conn)
    return json_response({"delivery_id": str(row["id"]), "replay": "requested"}, status=202)


@routes.post("/api/automations/{automation_id}/replay")
async def replay_many(request: web.Request) -> web.Response:
    """Every finished delivery of the automation matching `state`, `since` and `until`."""
    body = await read_json(request) if request.body_exists else {}
    if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
        raise invalid("body", "expected a JSON object of state, since and until")
    unknown = set(body) - {"state", "since", "until"}
    if unknown:
        raise invalid(sorted(unknown)[0], "expected only state, since and until")
    automation = path_uuid(request, "automation_id", "automation")
    where = delivery_filter(request, body, automation)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if await repo.get_automation(conn, automation) is None:
            raise RecordNotFound("no automation has that id")
        replayed = await repo.replay_deliveries(conn, where)
        await schedule_rows.wake_scheduler(conn)
    return json_response({"automation_id": str(automation), "replayed": replayed}, status=202)
