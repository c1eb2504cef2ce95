"""The delivery log of outgoing webhooks: list, show every attempt, replay one or many."""

import uuid
from collections.abc import Callable, Mapping
from typing import TypeVar, get_args

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from services.casestore import replays
from services.casestore.api.answers import (
    DeliveryList,
    DeliveryWithAttempts,
    Replayed,
    ReplayRequested,
)
from services.casestore.auth import actor_of
from services.casestore.errors import found
from services.casestore.params import invalid, path_uuid, query_int, query_time, query_uuid
from services.casestore.repo import Conn
from services.casestore.repo import deliveries as delivery_rows
from shared.bodies import read_model
from shared.event_payloads import DeliveryState
from shared.openapi import Param, errors, operation
from shared.service import POOL, SETTINGS
from shared.web import json_response

routes = web.RouteTableDef()
STATES: tuple[str, ...] = get_args(DeliveryState)
BY_ID = {"delivery_id": {"format": "uuid"}}
T = TypeVar("T")
UUID = {"type": "string", "format": "uuid"}
LOG_FILTERS = (
    Param("automation", UUID), Param("case", UUID),
    Param("state", {"type": "string"}, "one or more of pending, sending, retrying, succeeded, "
          "failed, comma separated"),
    Param("since", {"type": "string", "format": "date-time"}, "created at or after"),
    Param("until", {"type": "string", "format": "date-time"}, "created before"),
    Param("webhook_id", {"type": "string"}, "the webhook-id header a receiver got (msg_...)"),
    Param("status", {"type": "string"}, "an attempt answered with one of these, comma "
          "separated: a status (503), a class (5xx) or none (no answer)"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
    Param("before", UUID, "next_before of the previous page"))


class ReplayFilter(BaseModel):
    """Which finished deliveries to replay: `state` (succeeded, failed or both, comma
    separated), `since` and `until` (ISO 8601 times, on when a delivery was created)."""

    model_config = ConfigDict(extra="forbid")
    state: str | None = None
    since: str | None = None
    until: str | None = None


async def _delivery(conn: Conn, request: web.Request) -> delivery_rows.DeliveryRow:
    row = await delivery_rows.get_delivery(conn, path_uuid(request, "delivery_id", "delivery"))
    return found(row, replays.NO_DELIVERY)


async def _page_after(conn: Conn, request: web.Request) -> delivery_rows.DeliveryRow | None:
    """The previous page's last delivery, which `before` names."""
    before_id = query_uuid(request, "before")
    if before_id is None:
        return None
    last = await delivery_rows.get_delivery(conn, before_id)
    if last is None:
        raise invalid("before", "no delivery has that id")
    return last


def delivery_filter(request: web.Request, query: Mapping[str, str],
                    automation: uuid.UUID | None = None) -> delivery_rows.DeliveryFilter:
    """`automation`, `case`, `state` (one or several, comma separated), `since`, `until`,
    `webhook_id`, `status`."""
    states = None
    if query.get("state"):
        states = tuple(query["state"].split(","))
        if not set(states) <= set(STATES):
            raise invalid("state", f"expected one or more of: {', '.join(STATES)}")
    return delivery_rows.DeliveryFilter(
        automation_id=automation or query_uuid(request, "automation"),
        case_id=query_uuid(request, "case"), states=states,
        since=query_time(query, "since"), until=query_time(query, "until"),
        webhook_id=_parsed(delivery_rows.webhook_id_filter, query, "webhook_id"),
        statuses=_parsed(delivery_rows.status_filter, query, "status"))


def _parsed(parse: Callable[[str], T], query: Mapping[str, str], name: str) -> T | None:
    """A query value read by `parse`; a 400 naming it if it cannot."""
    raw = query.get(name)
    if not raw:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        raise invalid(name, str(exc)) from exc


@routes.get("/api/deliveries")
@operation("The delivery log, newest first", tags=("deliveries",),
           responses={200: DeliveryList}, params=LOG_FILTERS)
async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first; filter by automation, case, state and time; page with `limit`, `before`.

    `before` is the previous page's `next_before` (the id of its last delivery).
    """
    limit = query_int(request, "limit", 50, 500) or 50
    where = delivery_filter(request, request.query)
    async with request.app[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        before = await _page_after(conn, request)
        rows = await delivery_rows.list_deliveries(conn, where, limit=limit, before=before)
    next_before = str(rows[-1].id) if len(rows) == limit else None
    return json_response({"deliveries": [r.to_api() for r in rows], "next_before": next_before})


@routes.get("/api/deliveries/{delivery_id}")
@operation("A delivery with every attempt", tags=("deliveries",),
           responses={200: DeliveryWithAttempts}, path_schemas=BY_ID)
async def get_delivery(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        row = await _delivery(conn, request)
        attempts = await delivery_rows.delivery_attempts(conn, row.id)
    excerpt = request.app[SETTINGS].response_excerpt_bytes
    return json_response({**row.to_api(), "attempts": [a.to_api(excerpt) for a in attempts]})


@routes.post("/api/deliveries/{delivery_id}/replay")
@operation("Send a finished delivery again (same webhook-id)", tags=("deliveries",),
           responses={202: ReplayRequested, **errors(409)}, path_schemas=BY_ID)
async def replay(request: web.Request) -> web.Response:
    """Sent again with the same webhook-id, through the endpoint's cap; the attempts land here."""
    delivery = path_uuid(request, "delivery_id", "delivery")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await replays.replay_delivery(conn, actor_of(request), delivery)
    return json_response({"delivery_id": str(row.id), "replay": "requested"}, status=202)


@routes.post("/api/automations/{automation_id}/replay")
@operation("Replay the automation's finished deliveries matching state, since and until",
           body=ReplayFilter, tags=("deliveries",), responses={202: Replayed},
           path_schemas={"automation_id": {"format": "uuid"}})
async def replay_many(request: web.Request) -> web.Response:
    """Every finished delivery of the automation matching `state`, `since` and `until`."""
    body = await read_model(request, ReplayFilter) if request.body_exists else ReplayFilter()
    automation = path_uuid(request, "automation_id", "automation")
    where = delivery_filter(request, body.model_dump(exclude_none=True), automation)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        replayed = await replays.replay_automation(conn, actor_of(request), where)
    return json_response({"automation_id": str(automation), "replayed": replayed}, status=202)
