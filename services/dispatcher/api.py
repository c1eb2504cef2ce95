"""The dispatcher's internal HTTP API: casestore's `POST /api/automations/{id}/test` lands here."""

import uuid
from datetime import UTC, datetime

from aiohttp import web

from services.dispatcher.content import Delivery
from services.dispatcher.deliveries import Dependencies, send
from shared.bodies import read_model
from shared.event_payloads import CaseChanged, TestSend
from shared.forms import FormDefinition, sample_value
from shared.web import NotFound, json_response

routes = web.RouteTableDef()
DEPENDENCIES = web.AppKey("dependencies", Dependencies)
TEST_AUTHOR = "Casewire test send"


def sample_case(form: FormDefinition) -> CaseChanged:
    now = datetime.now(UTC)
    return CaseChanged(case_id=uuid.uuid4(), case_number=0, status=form.initial_status,
                       data={f.id: sample_value(f) for f in form.fields}, creator=TEST_AUTHOR,
                       created_at=now, updated_at=now, version=1, author=TEST_AUTHOR)


@routes.post("/internal/automations/{automation_id}/test")
async def test_send(request: web.Request) -> web.Response:
    """One attempt to the real receiver; nothing is recorded and no answer is written back.

    Not later either: the returnDataURL names a fresh case id, not the real case's.
    """
    deps = request.app[DEPENDENCIES]
    body = await read_model(request, TestSend)
    try:
        automation_id = uuid.UUID(request.match_info["automation_id"])
    except ValueError as exc:
        raise NotFound("no such automation") from exc
    automation = await deps.reader.automation(automation_id)
    form = await deps.reader.form(automation.form_id) if automation else None
    if automation is None or form is None:
        raise NotFound("no such automation")
    if body.case_id is None:
        case = sample_case(form)
    else:
        row = await deps.reader.case(body.case_id)
        if row is None or row.form_id != form.id:
            raise NotFound(f"form '{form.id}' has no case {body.case_id}")
        case = CaseChanged.from_row(row, TEST_AUTHOR)
    delivery = Delivery(automation_id=automation.id, delivery_id=uuid.uuid4(), case=case,
                        form=form, return_case_id=uuid.uuid4())
    sent = await send(deps, automation, delivery, number=1)
    attempt = sent.attempt
    return json_response({
        "succeeded": sent.verdict == "succeeded",
        "request": attempt.request.model_dump(mode="json"),
        "status": attempt.response_status, "headers": attempt.response_headers,
        "body": attempt.response_body, "error": attempt.error,
        "duration_ms": attempt.duration_ms,
    })
