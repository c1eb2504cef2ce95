"""Console pages of the delivery log: filter, open one with every attempt, replay it."""

import uuid
from typing import Any, get_args

from aiohttp import web

from services.casestore import replays
from services.casestore.auth import actor_of
from services.casestore.console.render import page, parse_time, see_other
from services.casestore.errors import found
from services.casestore.params import path_uuid
from services.casestore.repo import deliveries as delivery_rows
from services.casestore.repo import stats as stats_rows
from shared.event_payloads import DeliveryState
from shared.service import POOL, SETTINGS

routes = web.RouteTableDef()
STATES: tuple[str, ...] = get_args(DeliveryState)
PAGE_SIZE = 50


def _uuid(raw: str, name: str, problems: dict[str, str]) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        problems[name] = "expected an id (a UUID)"
        return None


def _filter(request: web.Request) -> tuple[delivery_rows.DeliveryFilter, dict[str, str]]:
    """The filter the query asks for; a bad value is reported beside its input, not applied."""
    query, problems = request.query, {}
    states = tuple(s for s in query.getall("state", []) if s in STATES) or None
    times = {}
    for name in ("since", "until"):
        try:
            times[name] = parse_time(query.get(name, ""))
        except ValueError:
            problems[name] = "expected a date and time, e.g. 2026-12-01T08:00"
            times[name] = None
    parsed: dict[str, Any] = {}
    for name, parse in (("webhook_id", delivery_rows.webhook_id_filter),
                        ("status", delivery_rows.status_filter)):
        raw = query.get(name, "").strip()
        try:
            parsed[name] = parse(raw) if raw else None
        except ValueError as exc:
            problems[name], parsed[name] = str(exc), None
    return delivery_rows.DeliveryFilter(
        automation_id=_uuid(query.get("automation", ""), "automation", problems),
        case_id=_uuid(query.get("case", "").strip(), "case", problems), states=states,
        since=times["since"], until=times["until"], webhook_id=parsed["webhook_id"],
        statuses=parsed["status"]), problems


@routes.get("/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first, PAGE_SIZE at a time; `before` is the last delivery of the page before."""
    where, problems = _filter(request)
    async with request.config_dict[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        before_id = _uuid(request.query.get("before", ""), "before", problems)
        before = await delivery_rows.get_delivery(conn, before_id) if before_id else None
        rows = await delivery_rows.list_deliveries(conn, where, limit=PAGE_SIZE, before=before)
        automations = await stats_rows.automation_overview(conn)
    older = None
    if len(rows) == PAGE_SIZE:
        older = request.rel_url.update_query(before=str(rows[-1].id))
    return page(request, "deliveries.html", deliveries=rows, automations=automations,
                states=STATES, where=where, query=request.query, problems=problems,
                older=older)


@routes.get("/deliveries/{delivery_id}")
async def show_delivery(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        row = found(await delivery_rows.get_delivery(
            conn, path_uuid(request, "delivery_id", "delivery")), replays.NO_DELIVERY)
        attempts = await delivery_rows.delivery_attempts(conn, row.id)
    return page(request, "delivery.html", delivery=row, attempts=attempts,
                excerpt_bytes=request.config_dict[SETTINGS].response_excerpt_bytes)


@routes.post("/deliveries/{delivery_id}/replay")
async def replay(request: web.Request) -> web.Response:
    """Due again with the same webhook-id; the new attempts continue its numbering."""
    delivery = path_uuid(request, "delivery_id", "delivery")
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        row = await replays.replay_delivery(conn, actor_of(request), delivery)
    raise see_other(f"/console/deliveries/{row.id}", notice="replayed")
