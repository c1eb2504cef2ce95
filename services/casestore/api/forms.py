"""Forms: create, read, replace, delete, and the "Form Structure" download."""


from aiohttp import web

from services.casestore import form_writes, webhook_writes
from services.casestore.api.answers import FormList, FormStructure
from services.casestore.auth import actor_of
from services.casestore.errors import ValidationFailed

# Other console pages load forms through this module.
from services.casestore.form_structure import structure
from services.casestore.form_writes import load_form
from services.casestore.params import invalid
from services.casestore.repo import access as access_rows
from services.casestore.repo import forms as form_rows
from services.casestore.webhook_writes import WebhookKeys
from shared.bodies import read_model
from shared.forms import FieldError, FormDefinition
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
