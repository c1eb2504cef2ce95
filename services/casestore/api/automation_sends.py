"""The admin's test send: one attempt, run by the dispatcher, whose answer comes back as is."""

from aiohttp import web

from services.casestore.api.automations import automation_id
from services.casestore.one_off_sends import DispatcherUnreachable, NotJson, send_test
from shared.bodies import read_model
from shared.event_payloads import TestSend
from shared.openapi import ANY_JSON, errors, operation
from shared.web import BadGateway, Unavailable, json_response

routes = web.RouteTableDef()


@routes.post("/api/automations/{automation_id}/test")
@operation("One test send through the dispatcher; its status and JSON come back as is",
           body=TestSend, tags=("automations",),
           responses={"default": ANY_JSON, **errors(502, 503)},
           path_schemas={"automation_id": {"format": "uuid"}})
async def test_send(request: web.Request) -> web.Response:
    body = await read_model(request, TestSend) if request.body_exists else TestSend()
    try:
        status, answer = await send_test(request, automation_id(request), body)
    except DispatcherUnreachable as exc:
        raise Unavailable("the dispatcher cannot be reached to send the test; try again",
                          retry_after=None) from exc
    except NotJson as exc:
        raise BadGateway(str(exc)) from exc
    return json_response(answer, status=status)
