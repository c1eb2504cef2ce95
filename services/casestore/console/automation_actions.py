"""What the automation page's buttons do: enable, disable, rotate the secret, test send,
replay what it sent since a time."""

import uuid
from typing import Any

import orjson
from aiohttp import web

from services.casestore import automation_writes, replays
from services.casestore.auth import actor_of
from services.casestore.automations import SECRET_BOX
from services.casestore.console import automation_form
from services.casestore.console.automations_pages import (
    automation_id,
    editor_page,
    load_shown,
)
from services.casestore.console.render import parse_time, see_other, text
from services.casestore.form_writes import load_form
from services.casestore.one_off_sends import DispatcherUnreachable, NotJson, send_test
from services.casestore.repo import deliveries as delivery_rows
from shared.bodies import read_form
from shared.event_payloads import TestSend
from shared.service import POOL

routes = web.RouteTableDef()
MAX_OVERLAP_HOURS = 24 * 30


async def _show_with(request: web.Request, status: int = 200, **context: Any) -> web.Response:
    """The automation's page again, with a result or a problem of one of its buttons."""
    async with request.config_dict[POOL].acquire() as conn:
        shown = await load_shown(request, conn)
        form = await load_form(conn, shown["form_id"])
    return editor_page(request, form, automation_form.AutomationEditor.of(shown), shown=shown,
                       status=status, **context)


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        row = await automation_writes.set_enabled(conn, actor_of(request),
                                                  request.config_dict[SECRET_BOX],
                                                  automation_id(request), enabled,
                                                  "disabled in the console")
    notice = "automation_enabled" if enabled else "automation_disabled"
    raise see_other(f"/console/automations/{row.id}", notice=notice)


@routes.post("/automations/{automation_id}/enable")
async def enable(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


@routes.post("/automations/{automation_id}/disable")
async def disable(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


@routes.post("/automations/{automation_id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    posted = await read_form(request)
    raw = text(posted, "overlap_hours")
    try:
        hours = float(raw)
    except ValueError:
        hours = -1.0
    if "confirm" not in posted or not 0 <= hours <= MAX_OVERLAP_HOURS:
        return await _show_with(request, status=400, rotate_error=(
            f"Give the overlap in hours (0 to {MAX_OVERLAP_HOURS}) and tick the box to "
            "confirm."))
    box = request.config_dict[SECRET_BOX]
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        row = await automation_writes.rotate_secret(conn, actor_of(request), box,
                                                    automation_id(request), hours)
    raise see_other(f"/console/automations/{row.id}", notice="secret_rotated")


@routes.post("/automations/{automation_id}/test")
async def test_send(request: web.Request) -> web.Response:
    case = text(await read_form(request), "case_id")
    try:
        body = TestSend(case_id=uuid.UUID(case) if case else None)
    except ValueError:
        return await _show_with(request, status=400, test_error="The case id is not a UUID.")
    try:
        status, answer = await send_test(request, automation_id(request), body)
    except DispatcherUnreachable as exc:
        return await _show_with(request, test_result={"status": 503, "answer": (
            f"The dispatcher cannot be reached to send the test ({exc}); try again.")})
    except NotJson as exc:
        return await _show_with(request, test_result={"status": 502, "answer": (
            f"The dispatcher answered {exc.status} without a JSON body.")})
    return await _show_with(request, test_result={
        "status": status, "answer": orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode()})


@routes.post("/automations/{automation_id}/replay")
async def replay(request: web.Request) -> web.Response:
    """Every finished delivery matching the state, since `since` (required: a resend cannot be
    undone) and before `until`."""
    posted = await read_form(request)
    state = text(posted, "state")
    try:
        since, until = parse_time(text(posted, "since")), parse_time(text(posted, "until"))
    except ValueError:
        since = until = None
    if since is None or state not in ("failed", "succeeded", "both"):
        return await _show_with(request, status=400, replay_error=(
            "Choose which deliveries and give the time from which to replay them."))
    automation = automation_id(request)
    where = delivery_rows.DeliveryFilter(
        automation_id=automation, states=None if state == "both" else (state,),
        since=since, until=until)
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        replayed = await replays.replay_automation(conn, actor_of(request), where)
    raise see_other(f"/console/automations/{automation}", notice="replayed_many", n=replayed)
