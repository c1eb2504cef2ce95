"""Forms: create, read, replace, delete, and the "Form Structure" download."""

import shlex

import orjson
from aiohttp import web

from services.casestore import form_writes, webhook_writes
from services.casestore.api.answers import FormList, FormStructure
from services.casestore.api.auth import actor_of
from services.casestore.api.params import invalid
from services.casestore.errors import ValidationFailed

# Other console pages load forms through this module.
from services.casestore.form_writes import load_form as load_form
from services.casestore.repo import access as access_rows
from services.casestore.repo import forms as form_rows
from services.casestore.webhook_writes import WebhookKeys
from shared.bodies import read_model
from shared.forms import FieldError, FieldType, FormDefinition, sample_value
from shared.openapi import Empty, Param, errors, operation
from shared.service import POOL
from shared.web import json_response

routes = web.RouteTableDef()


@routes.post("/api/forms")
@operation("Create a form", body=FormDefinition, tags=("forms",),
           responses={201: FormDefinition, **errors(409)})
async def create_form(request: web.Request) -> web.Response:
    form = await read_model(request, FormDefinition)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await form_writes.create(conn, actor_of(request), form)
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
        await form_writes.replace(conn, actor_of(request), form)
    return json_response(form.model_dump(mode="json"))


@routes.delete("/api/forms/{form_id}")
@operation("Delete a form; one with cases only with ?with_cases=true, which deletes them too",
           tags=("forms",), responses={200: Empty, **errors(409)},
           params=(Param("with_cases", {"type": "boolean"}, "delete its cases with it"),))
async def delete_form_route(request: web.Request) -> web.Response:
    raw = request.query.get("with_cases", "false")
    if raw not in ("true", "false"):
        raise invalid("with_cases", "expected true or false")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await form_writes.delete(conn, actor_of(request), request.match_info["form_id"],
                                 with_cases=raw == "true")
    return json_response({})


def curl_example(url: str, form: FormDefinition) -> str:
    """A request that succeeds as it stands: every mandatory field, or else one text field."""
    settable = [f for f in form.fields if f.section == 0 and f.type != FieldType.FILE]
    chosen = [f for f in settable if f.mandatory] or [
        f for f in settable if f.type in (FieldType.TEXT, FieldType.TEXTAREA)][:1]
    body = orjson.dumps({f.id: sample_value(f) for f in chosen}).decode()
    return (f"curl -X POST -H 'Content-type: application/json' \\\n"
            f"--data {shlex.quote(body)} \\\n{url}")


def structure(form: FormDefinition, url: str | None) -> dict[str, object]:
    """The "Form Structure" of the form with this webhook URL (None: it has no webhook)."""
    return {
        "form": {"id": form.id, "name": form.name},
        "sections": [{"index": i, "name": s.name} for i, s in enumerate(form.sections)],
        "fields": [{"id": f.id, "label": f.label, "type": f.type, "section": f.section,
                    "mandatory": f.mandatory, "options": f.options,
                    "settable_by_incoming_webhook": f.section == 0 and f.type != FieldType.FILE}
                   for f in form.fields],
        "statuses": form.statuses,
        "incoming_webhook_url": url,
        "send_directly_as_json": curl_example(url or "https://yourWebhookUrl", form),
    }


@routes.get("/api/forms/{form_id}/structure")
@operation("The Form Structure: fields, webhook URL and a ready curl line (a viewer sees the "
           "URL's token as ***)", tags=("forms",), responses={200: FormStructure})
async def form_structure(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
        hook = await access_rows.get_webhook(conn, form.id)
    url = webhook_writes.url(WebhookKeys.of(request), hook,
                             secrets=actor_of(request).sees_secrets) if hook else None
    return json_response(structure(form, url))
