"""Automations of a form: create, read, replace, delete, enable/disable and rotate the secret."""

import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from services.casestore import automation_writes
from services.casestore.api.answers import Automation, AutomationBody, AutomationList
from services.casestore.auth import actor_of
from services.casestore.automation_writes import NO_AUTOMATION
from services.casestore.automations import SECRET_BOX, parse_body, shown_to
from services.casestore.errors import found
from services.casestore.form_writes import load_form
from services.casestore.params import path_uuid, query_float
from services.casestore.repo import automations as automation_rows
from services.casestore.repo import schedule as schedule_rows
from shared import payloads
from shared.addresses import AddressPolicy
from shared.automations import AutomationDefinition
from shared.bodies import read_json, read_model
from shared.forms import Label
from shared.openapi import ANY_JSON, Empty, Param, operation
from shared.service import POOL, SETTINGS
from shared.web import json_response

routes = web.RouteTableDef()
BY_ID = {"automation_id": {"format": "uuid"}}


def automation_id(request: web.Request) -> uuid.UUID:
    return path_uuid(request, "automation_id", "automation")


def _shown(request: web.Request, row: automation_rows.AutomationRow,
           health: schedule_rows.HealthRow | None = None) -> dict[str, Any]:
    return shown_to(actor_of(request), row, request.app[SECRET_BOX], health)


def _policy(request: web.Request) -> AddressPolicy:
    return AddressPolicy(request.app[SETTINGS].outgoing_allow_networks)


@routes.post("/api/forms/{form_id}/automations")
@operation("Create an automation", body=AutomationBody, tags=("automations",),
           responses={201: Automation})
async def create_automation(request: web.Request) -> web.Response:
    definition, enabled = parse_body(await read_json(request))
    async with request.app[POOL].acquire() as conn, conn.transaction():
        form = await load_form(conn, request.match_info["form_id"])
        automation_writes.check(definition, form, _policy(request))
        row = await automation_writes.create(conn, actor_of(request), request.app[SECRET_BOX],
                                             form.id, definition, enabled is not False)
    return json_response(_shown(request, row), status=201)


@routes.get("/api/forms/{form_id}/automations")
@operation("The form's automations, oldest first (a viewer sees each signing secret as ***)",
           tags=("automations",),
           responses={200: AutomationList})
async def list_automations(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
        rows = await automation_rows.list_automations(conn, form.id)
        health = await schedule_rows.health_of(conn, [r.id for r in rows])
    return json_response({"automations": [_shown(request, r, health.get(r.id)) for r in rows]})


@routes.get("/api/automations/{automation_id}")
@operation("One automation (a viewer sees its signing secret as ***)", tags=("automations",),
           responses={200: Automation}, path_schemas=BY_ID)
async def get_automation(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = found(await automation_rows.get_automation(conn, automation_id(request)),
                    NO_AUTOMATION)
        health = await schedule_rows.health(conn, row.id)
    return json_response(_shown(request, row, health))


@routes.put("/api/automations/{automation_id}")
@operation("Replace the definition (and enabled, if given); a password of *** keeps the "
           "stored one", body=AutomationBody, tags=("automations",),
           responses={200: Automation}, path_schemas=BY_ID)
async def replace_automation(request: web.Request) -> web.Response:
    """Replace the definition; `enabled` too if given. A password of "***" keeps the stored one."""
    definition, enabled = parse_body(await read_json(request))
    async with request.app[POOL].acquire() as conn, conn.transaction():
        current = found(await automation_rows.get_automation(conn, automation_id(request),
                                                             lock=True), NO_AUTOMATION)
        automation_writes.check(definition, await load_form(conn, current.form_id),
                                _policy(request))
        row = await automation_writes.replace(conn, actor_of(request), request.app[SECRET_BOX],
                                              current, definition, enabled)
    return json_response(_shown(request, row))


@routes.delete("/api/automations/{automation_id}")
@operation("Delete it; its delivery log stays, what waited fails", tags=("automations",),
           responses={200: Empty}, path_schemas=BY_ID)
async def delete_automation(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await automation_writes.delete(conn, actor_of(request), request.app[SECRET_BOX],
                                       automation_id(request))
    return json_response({})


class Disabling(BaseModel):
    """Why it is switched off (default: "disabled through the API"); an automation disabled
    already keeps the reason it was disabled for."""

    model_config = ConfigDict(extra="forbid")
    reason: Label | None = None


async def _set_enabled(request: web.Request, enabled: bool,
                       reason: str = "disabled through the API") -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await automation_writes.set_enabled(conn, actor_of(request),
                                                  request.app[SECRET_BOX],
                                                  automation_id(request), enabled, reason)
    return json_response(_shown(request, row))


@routes.post("/api/automations/{automation_id}/enable")
@operation("Switch it on: what waited is sent", tags=("automations",),
           responses={200: Automation}, path_schemas=BY_ID)
async def enable_automation(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


@routes.post("/api/automations/{automation_id}/disable")
@operation("Switch it off, saying why (optional); a disabled one keeps its reason",
           body=Disabling, tags=("automations",), responses={200: Automation},
           path_schemas=BY_ID)
async def disable_automation(request: web.Request) -> web.Response:
    body = await read_model(request, Disabling) if request.body_exists else Disabling()
    return await _set_enabled(request, False, *([body.reason] if body.reason else []))


@routes.post("/api/automations/{automation_id}/rotate-secret")
@operation("A new signing secret; the old one signs beside it for the overlap",
           tags=("automations",), responses={200: Automation}, path_schemas=BY_ID,
           params=(Param("overlap_hours", {"type": "number", "minimum": 0, "maximum": 720}),))
async def rotate_secret(request: web.Request) -> web.Response:
    """The old secret keeps signing beside the new one for `?overlap_hours=` (default
    CASEWIRE_SECRET_OVERLAP_HOURS, 24), so receivers can switch at their pace."""
    hours = query_float(request, "overlap_hours", request.app[SETTINGS].secret_overlap_hours,
                        high=24 * 30)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await automation_writes.rotate_secret(conn, actor_of(request),
                                                    request.app[SECRET_BOX],
                                                    automation_id(request), hours)
    return json_response(_shown(request, row))


@routes.get("/api/automations/{automation_id}/openapi.json")
@operation("What this automation sends: an OpenAPI 3.1 document whose webhooks describe its "
           "payload per trigger, for its method and protocol", tags=("automations",),
           responses={200: ANY_JSON}, path_schemas=BY_ID)
async def automation_payloads(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = found(await automation_rows.get_automation(conn, automation_id(request)),
                    NO_AUTOMATION)
        form = await load_form(conn, row.form_id)
    definition = AutomationDefinition.model_validate(row.definition)
    return json_response({
        "openapi": "3.1.0",
        "info": {"title": f"Casewire automation {definition.name}", "version": str(row.id)},
        "webhooks": payloads.automation_webhooks(definition, form),
        "components": {"schemas": {"CaseMetadata": payloads.metadata_component()}}})
