"""The admin's test send: one attempt, run by the dispatcher, whose answer comes back as is."""

import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import structlog
from aiohttp import web

from services.casestore.api.automations import automation_id
from services.casestore.automation_writes import NO_AUTOMATION
from services.casestore.errors import found
from services.casestore.repo import automations as automation_rows
from shared.bodies import read_model
from shared.event_payloads import TestSend
from shared.logging import bound_correlation_id
from shared.openapi import ANY_JSON, errors, operation
from shared.service import POOL, SETTINGS
from shared.web import CORRELATION_HEADER, BadGateway, Unavailable, json_response

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()
DISPATCHER = web.AppKey("dispatcher", aiohttp.ClientSession)
# One attempt at the longest configurable timeout (60 s), plus room for the dispatcher itself.
TEST_SEND_TIMEOUT = aiohttp.ClientTimeout(total=90, sock_connect=5)


async def dispatcher_client_ctx(app: web.Application) -> AsyncIterator[None]:
    token = app[SETTINGS].admin_token
    async with aiohttp.ClientSession(timeout=TEST_SEND_TIMEOUT,
                                     headers={"Authorization": f"Bearer {token}"}) as session:
        app[DISPATCHER] = session
        yield


@routes.post("/api/automations/{automation_id}/test")
@operation("One test send through the dispatcher; its status and JSON come back as is",
           body=TestSend, tags=("automations",),
           responses={"default": ANY_JSON, **errors(502, 503)},
           path_schemas={"automation_id": {"format": "uuid"}})
async def test_send(request: web.Request) -> web.Response:
    """The dispatcher sends (it owns the sending rules); its status and JSON come back as is."""
    body = await read_model(request, TestSend) if request.body_exists else TestSend()
    automation = automation_id(request)
    async with request.app[POOL].acquire() as conn:
        found(await automation_rows.get_automation(conn, automation), NO_AUTOMATION)
    url = (request.app[SETTINGS].dispatcher_url.rstrip("/")
           + f"/internal/automations/{automation}/test")
    try:
        async with request.app[DISPATCHER].post(
                url, json=body.model_dump(mode="json", exclude_none=True),
                headers={CORRELATION_HEADER: bound_correlation_id() or str(uuid.uuid4())}) as resp:
            status, raw = resp.status, await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("dispatcher_unreachable", error=repr(exc))
        raise Unavailable("the dispatcher cannot be reached to send the test; try again",
                          retry_after=None) from exc
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        log.warning("dispatcher_answer_not_json", status=status)
        raise BadGateway(f"the dispatcher answered {status} without a JSON body") from exc
    return json_response(answer, status=status)
