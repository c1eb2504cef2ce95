"""What the automation page's buttons do: enable, disable, rotate the secret, test send,
replay what it sent since a time."""

import uuid
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from services.casestore import automation_writes, replays
from services.casestore.api.auth import actor_of
from services.casestore.api.automation_sends import DISPATCHER
from services.casestore.api.forms import load_form
from services.casestore.automation_writes import NO_AUTOMATION
from services.casestore.automations import SECRET_BOX
from services.casestore.console import automation_form
from services.casestore.console.automations_pages import (
    automation_id,
    editor_page,
    load_shown,
)
from services.casestore.console.render import parse_time, see_other, text
from services.casestore.errors import found
from services.casestore.repo import automations as automation_rows
from services.casestore.repo import deliveries as delivery_rows
from shared.bodies import read_form
from shared.logging import bound_correlation_id
from shared.service import POOL, SETTINGS
from shared.web import CORRELATION_HEADER

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


async def _send_test(request: web.Request, automation: uuid.UUID,
                     body: dict[str, str]) -> tuple[int, str]:
    """The dispatcher sends one attempt (as POST /api/automations/{id}/test asks it to)."""
    url = (request.config_dict[SETTINGS].dispatcher_url.rstrip("/")
           + f"/internal/automations/{automation}/test")
    headers = {CORRELATION_HEADER: bound_correlation_id() or str(uuid.uuid4())}
    try:
        async with request.config_dict[DISPATCHER].post(url, json=body, headers=headers) as resp:
            status, raw = resp.status, await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 503, f"The dispatcher cannot be reached to send the test ({exc!r}); try again."
    try:
        return status, orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return 502, f"The dispatcher answered {status} without a JSON body."


@routes.post("/automations/{automation_id}/test")
async def test_send(request: web.Request) -> web.Response:
    case = text(await read_form(request), "case_id")
    try:
        body = {"case_id": str(uuid.UUID(case))} if case else {}
    except ValueError:
        return await _show_with(request, status=400, test_error="The case id is not a UUID.")
    automation = automation_id(request)
    async with request.config_dict[POOL].acquire() as conn:
        found(await automation_rows.get_automation(conn, automation), NO_AUTOMATION)
    status, answer = await _send_test(request, automation, body)
    return await _show_with(request, test_result={"status": status, "answer": answer})


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
