"""Forms: create, read, replace, delete, and the "Form Structure" download."""

import shlex

import asyncpg
import orjson
from aiohttp import web

from services.casestore import webhook_tokens
from services.casestore.api.answers import FormList, FormStructure
from services.casestore.api.params import invalid
from services.casestore.errors import Conflict, RecordNotFound, ValidationFailed, found
from services.casestore.repo import Conn
from services.casestore.repo import access as access_rows
from services.casestore.repo import deliveries as delivery_rows
from services.casestore.repo import forms as form_rows
from services.casestore.repo import outbox as outbox_rows
from services.casestore.webhook_tokens import TOKEN_SEAL
from shared.bodies import read_model
from shared.events import FORM_CHANGED, FormChanged, FormChangeKind, new_event
from shared.forms import FieldError, FieldType, FormDefinition, sample_value
from shared.openapi import Empty, Param, errors, operation
from shared.service import POOL, SETTINGS
from shared.web import json_response

routes = web.RouteTableDef()


async def announce_form(conn: Conn, form_id: str, change: FormChangeKind) -> None:
    """Queue form.changed in the caller's transaction so ingest refreshes its cache."""
    await outbox_rows.insert_outbox(conn, [new_event(
        FORM_CHANGED, FormChanged(form_id=form_id, change=change), form_id=form_id)])


async def load_form(conn: Conn, form_id: str) -> FormDefinition:
    return found(await form_rows.get_form(conn, form_id), f"form '{form_id}' not found")


@routes.post("/api/forms")
@operation("Create a form", body=FormDefinition, tags=("forms",),
           responses={201: FormDefinition, **errors(409)})
async def create_form(request: web.Request) -> web.Response:
    form = await read_model(request, FormDefinition)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        try:
            await form_rows.insert_form(conn, form)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"form '{form.id}' already exists") from exc
        await announce_form(conn, form.id, "created")
    return json_response(form.model_dump(mode="json"), status=201)


@routes.get("/api/forms")
@operation("List the forms", tags=("forms",), responses={200: FormList})
async def list_forms(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        forms = await form_rows.list_forms(conn)
    return json_response({"forms": [f.model_dump(mode="json") for f in forms]})


@routes.get("/api/forms/{form_id}")
@operation("One form", tags=("forms",), responses={200: FormDefinition})
async def get_form(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
    return json_response(form.model_dump(mode="json"))


@routes.put("/api/forms/{form_id}")
@operation("Replace a form (the id must match the URL); emits form.changed",
           body=FormDefinition, tags=("forms",), responses={200: FormDefinition})
async def replace_form(request: web.Request) -> web.Response:
    form = await read_model(request, FormDefinition)
    if form.id != request.match_info["form_id"]:
        raise ValidationFailed([FieldError(field="id", code="invalid",
                                           message="must match the URL: form ids cannot change")])
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await form_rows.update_form(conn, form):
            raise RecordNotFound(f"form '{form.id}' not found")
        await announce_form(conn, form.id, "updated")
    return json_response(form.model_dump(mode="json"))


async def delete_form(conn: Conn, form_id: str, *, with_cases: bool) -> None:
    """Delete the form; with its cases (their history, files and timers) only if asked to,
    else 409 while it has any. Its automations go with it, their deliveries still waiting
    fail, and the delivery log stays. Run in a transaction."""
    cases = await form_rows.lock_form_for_delete(conn, form_id)
    if cases is None:
        raise RecordNotFound(f"form '{form_id}' not found")
    if cases and not with_cases:
        raise Conflict(f"form '{form_id}' still has {cases} case(s); delete them first, or "
                       "delete the form with them (?with_cases=true)")
    await delivery_rows.fail_waiting_deliveries_of_form(conn, form_id)
    await form_rows.delete_form(conn, form_id)
    await announce_form(conn, form_id, "deleted")


@routes.delete("/api/forms/{form_id}")
@operation("Delete a form; one with cases only with ?with_cases=true, which deletes them too",
           tags=("forms",), responses={200: Empty, **errors(409)},
           params=(Param("with_cases", {"type": "boolean"}, "delete its cases with it"),))
async def delete_form_route(request: web.Request) -> web.Response:
    raw = request.query.get("with_cases", "false")
    if raw not in ("true", "false"):
        raise invalid("with_cases", "expected true or false")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await delete_form(conn, request.match_info["form_id"], with_cases=raw == "true")
    return json_response({})


def curl_example(url: str, form: FormDefinition) -> str:
    """A request that succeeds as it stands: every mandatory field, or else one text field."""
    settable = [f for f in form.fields if f.section == 0 and f.type != FieldType.FILE]
    chosen = [f for f in settable if f.mandatory] or [
        f for f in settable if f.type in (FieldType.TEXT, FieldType.TEXTAREA)][:1]
    body = orjson.dumps({f.id: sample_value(f) for f in chosen}).decode()
    return (f"curl -X POST -H 'Content-type: application/json' \\\n"
            f"--data {shlex.quote(body)} \\\n{url}")


@routes.get("/api/forms/{form_id}/structure")
@operation("The Form Structure: fields, webhook URL and a ready curl line", tags=("forms",),
           responses={200: FormStructure})
async def form_structure(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
        hook = await access_rows.get_webhook(conn, form.id)
    url = webhook_tokens.url(request.app[SETTINGS].public_base_url,
                             request.app[TOKEN_SEAL].opened(hook)) if hook else None
    return json_response({
        "form": {"id": form.id, "name": form.name},
        "sections": [{"index": i, "name": s.name} for i, s in enumerate(form.sections)],
        "fields": [{"id": f.id, "label": f.label, "type": f.type, "section": f.section,
                    "mandatory": f.mandatory, "options": f.options,
                    "settable_by_incoming_webhook": f.section == 0 and f.type != "file"}
                   for f in form.fields],
        "statuses": form.statuses,
        "incoming_webhook_url": url,
        "send_directly_as_json": curl_example(url or "https://yourWebhookUrl", form),
    })
