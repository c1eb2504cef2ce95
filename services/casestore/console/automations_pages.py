"""Console pages of automations: a form's list with health, the editor, create and save.

Writes go through the same parse, checks and storage steps as the admin API's handlers.
"""

import uuid
from typing import Any

from aiohttp import web

from services.casestore import automation_writes
from services.casestore.auth import actor_of
from services.casestore.automation_writes import NO_AUTOMATION
from services.casestore.automations import SECRET_BOX, parse_body, shown_to
from services.casestore.console import automation_form, triggers
from services.casestore.console.render import page, see_other
from services.casestore.errors import ValidationFailed, found
from services.casestore.form_writes import load_form
from services.casestore.params import path_uuid
from services.casestore.repo import Conn
from services.casestore.repo import automations as automation_rows
from services.casestore.repo import deliveries as delivery_rows
from services.casestore.repo import schedule as schedule_rows
from shared.addresses import AddressPolicy
from shared.automations import META, AutomationDefinition
from shared.bodies import read_form
from shared.forms import FormDefinition
from shared.outgoing_auth import SECRET_KEYS
from shared.service import POOL, SETTINGS

routes = web.RouteTableDef()


def automation_id(request: web.Request) -> uuid.UUID:
    return path_uuid(request, "automation_id", "automation")


async def load_shown(request: web.Request, conn: Conn) -> dict[str, Any]:
    """The automation as GET /api/automations/{id} shows it to the same actor (health, secret
    but to a viewer, masked password), and how many of its deliveries succeeded in the last
    minute."""
    row = found(await automation_rows.get_automation(conn, automation_id(request)),
                NO_AUTOMATION)
    health = await schedule_rows.health(conn, row.id)
    return {**shown_to(actor_of(request), row, request.config_dict[SECRET_BOX], health),
            "succeeded_last_minute": await delivery_rows.succeeded_lately(conn, row.id, 60)}


def editor_page(request: web.Request, form: FormDefinition,
                editor: automation_form.AutomationEditor, *, shown: dict[str, Any] | None,
                status: int = 200, **context: Any) -> web.Response:
    return page(request, "automation.html", status=status, form=form, editor=editor,
                shown=shown, kinds=triggers.KINDS, sources=automation_form.SOURCES, meta=META,
                overlap=request.config_dict[SETTINGS].secret_overlap_hours,
                sees_secrets=actor_of(request).sees_secrets,
                default_ceiling=request.config_dict[SETTINGS].endpoint_concurrency, **context)


@routes.get("/forms/{form_id}/automations")
async def list_automations(request: web.Request) -> web.Response:
    box = request.config_dict[SECRET_BOX]
    async with request.config_dict[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
        rows = await automation_rows.list_automations(conn, form.id)
        health = await schedule_rows.health_of(conn, [r.id for r in rows])
    shown = [shown_to(actor_of(request), r, box, health.get(r.id)) for r in rows]
    return page(request, "automations.html", form=form, automations=shown)


@routes.get("/forms/{form_id}/automations/new")
async def new_automation(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
    editor = automation_form.AutomationEditor().with_blank_rows()
    return editor_page(request, form, editor, shown=None)


async def _definition(request: web.Request, conn: Conn, form: FormDefinition,
                      body: automation_form.Body) -> tuple[AutomationDefinition, bool | None]:
    """Parsed and checked as the API does; ValidationFailed lists every problem."""
    if body.problems:
        raise ValidationFailed(body.problems)
    definition, enabled = parse_body(body.json)
    automation_writes.check(definition, form,
                            AddressPolicy(request.config_dict[SETTINGS].outgoing_allow_networks))
    return definition, enabled


@routes.post("/forms/{form_id}/automations/new")
async def create_automation(request: web.Request) -> web.Response:
    editor = automation_form.read(await read_form(request), has_password=False)
    body = automation_form.body_of(editor, with_enabled=True)
    box = request.config_dict[SECRET_BOX]
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        form = await load_form(conn, request.match_info["form_id"])
        try:
            definition, enabled = await _definition(request, conn, form, body)
        except ValidationFailed as exc:
            automation_form.place_errors(editor, body, exc.errors)
            return editor_page(request, form, editor, shown=None, status=400)
        row = await automation_writes.create(conn, actor_of(request), box, form.id,
                                             definition, enabled is not False)
    raise see_other(f"/console/automations/{row.id}", notice="automation_created")


@routes.get("/automations/{automation_id}")
async def show_automation(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        shown = await load_shown(request, conn)
        form = await load_form(conn, shown["form_id"])
    return editor_page(request, form, automation_form.AutomationEditor.of(shown), shown=shown)


@routes.post("/automations/{automation_id}")
async def save_automation(request: web.Request) -> web.Response:
    """Replace the definition; a blank password keeps the stored one (as "***" does)."""
    box = request.config_dict[SECRET_BOX]
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        current = found(await automation_rows.get_automation(conn, automation_id(request),
                                                             lock=True), NO_AUTOMATION)
        form = await load_form(conn, current.form_id)
        stored_auth = current.definition["action"]["settings"]["auth"]
        editor = automation_form.read(await read_form(request),
                                      has_password=stored_auth["type"] in SECRET_KEYS)
        body = automation_form.body_of(editor, with_enabled=False)
        try:
            definition, _ = await _definition(request, conn, form, body)
            row = await automation_writes.replace(conn, actor_of(request), box, current,
                                                  definition, None)
        except ValidationFailed as exc:
            automation_form.place_errors(editor, body, exc.errors)
            shown = shown_to(actor_of(request), current, box,
                             await schedule_rows.health(conn, current.id))
            return editor_page(request, form, editor, shown=shown, status=400)
    raise see_other(f"/console/automations/{row.id}", notice="automation_saved")
