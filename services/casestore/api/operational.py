"""The operational webhook over the API (services/casestore/operational.py): set its URL and
events (admin), read it (a viewer without its secret), rotate its secret."""

import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError

from services.casestore import audit
from services.casestore.api.answers import OperationalWebhook
from services.casestore.auth import actor_of, requires
from services.casestore.automations import SECRET_BOX, url_problems
from services.casestore.errors import RecordNotFound, ValidationFailed
from services.casestore.operational import EVENT_TYPES, EventType
from services.casestore.repo import Conn
from services.casestore.repo import operational as operational_rows
from shared.addresses import AddressPolicy
from shared.automations import AutomationDefinition
from shared.bodies import read_model
from shared.crypto import SecretBox
from shared.forms import FieldError
from shared.openapi import errors, operation
from shared.service import POOL, SETTINGS
from shared.signing import new_webhook_secret
from shared.web import json_response

routes = web.RouteTableDef()
NAME = "Operational events"
NOT_SET = "no operational webhook is set: PUT /api/operational-webhook sets one"


class OperationalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl
    enabled: bool = True
    events: list[EventType] = Field(default_factory=lambda: list(EVENT_TYPES))


def _definition(url: HttpUrl) -> AutomationDefinition:
    """The automation that carries it: never fired by a case (it has no form); each event is
    sent as it is, retried on the extended schedule (about a day). Its URL is held to what
    any automation's may be (e.g. its length once normalised)."""
    try:
        return AutomationDefinition.model_validate({
            "name": NAME, "when": [{"event": "case_created"}],
            "action": {"type": "outgoing_webhook",
                       "settings": {"url": str(url), "retry": "extended", "timeout": 10}}})
    except ValidationError as exc:
        raise ValidationFailed([FieldError(field="url", code="invalid", message=e["msg"])
                                for e in exc.errors(include_url=False)]) from exc


def _shown(found: operational_rows.OperationalWebhook, box: SecretBox,
           with_secret: bool) -> dict[str, Any]:
    row = found.automation
    return {"automation_id": str(row.id), "url": row.definition["action"]["settings"]["url"],
            "enabled": row.enabled, "events": found.events,
            "secret": box.decrypt(row.secret) if with_secret else "***",
            "updated_at": row.updated_at.isoformat()}


async def _found(conn: Conn, *, lock: bool = False) -> operational_rows.OperationalWebhook:
    found = await operational_rows.get(conn, lock=lock)
    if found is None:
        raise RecordNotFound(NOT_SET)
    return found


@routes.get("/api/operational-webhook")
@operation("The operational webhook: where operational events go, which, and (admin) its "
           "signing secret", tags=("operational",),
           responses={200: OperationalWebhook, **errors(404)})
async def get_operational(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        found = await _found(conn)
    return json_response(_shown(found, request.app[SECRET_BOX],
                                actor_of(request).may("admin")))


@routes.put("/api/operational-webhook")
@requires("admin")
@operation("Set the operational webhook (admin); answers its signing secret",
           body=OperationalSettings, tags=("operational",), responses={200: OperationalWebhook})
async def put_operational(request: web.Request) -> web.Response:
    asked = await read_model(request, OperationalSettings)
    definition = _definition(asked.url)
    if problems := url_problems(definition, AddressPolicy(
            request.app[SETTINGS].outgoing_allow_networks)):
        raise ValidationFailed([p.model_copy(update={"field": "url"}) for p in problems])
    box = request.app[SECRET_BOX]
    events: list[str] = sorted(set(asked.events), key=EVENT_TYPES.index)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        before = await operational_rows.get(conn, lock=True)
        if before is None:
            await operational_rows.create(conn, uuid.uuid4(), definition.public(),
                                          asked.enabled, box.encrypt(new_webhook_secret()),
                                          events)
        else:
            await operational_rows.update(conn, definition.public(), asked.enabled, events)
        after = await _found(conn)
        await audit.record(conn, actor_of(request), "operational_webhook.updated",
                           "operational_webhook", str(after.automation.id),
                           before=_shown(before, box, False) if before else None,
                           after=_shown(after, box, False))
    return json_response(_shown(after, box, True))


@routes.post("/api/operational-webhook/rotate-secret")
@requires("admin")
@operation("A new signing secret for the operational webhook (admin); the old one stops at "
           "once", tags=("operational",), responses={200: OperationalWebhook, **errors(404)})
async def rotate_operational(request: web.Request) -> web.Response:
    box = request.app[SECRET_BOX]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        found = await _found(conn, lock=True)
        await operational_rows.set_secret(conn, found.automation.id,
                                          box.encrypt(new_webhook_secret()))
        after = await _found(conn)
        await audit.record(conn, actor_of(request), "operational_webhook.secret_rotated",
                           "operational_webhook", str(after.automation.id))
    return json_response(_shown(after, box, True))
