"""A test send of an automation, for the admin API and the console alike: the dispatcher sends
one attempt (it owns the sending rules) and its answer comes back as it is."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web

from services.casestore.automation_writes import NO_AUTOMATION
from services.casestore.errors import found
from services.casestore.repo import automations as automation_rows
from shared.event_payloads import TestSend
from shared.logging import bound_correlation_id
from shared.service import POOL, SETTINGS
from shared.web import CORRELATION_HEADER

log = structlog.get_logger(__name__)
DISPATCHER = web.AppKey("dispatcher", aiohttp.ClientSession)
# One attempt at the longest configurable timeout (60 s), plus room for the dispatcher itself.
TEST_SEND_TIMEOUT = aiohttp.ClientTimeout(total=90, sock_connect=5)


class DispatcherUnreachable(Exception):
    """The dispatcher did not answer: nothing was sent, or nobody can tell."""


class NotJson(Exception):
    """The dispatcher answered, but not with the JSON it always sends."""

    def __init__(self, status: int):
        super().__init__(f"the dispatcher answered {status} without a JSON body")
        self.status = status


async def dispatcher_client_ctx(app: web.Application) -> AsyncIterator[None]:
    token = app[SETTINGS].admin_token
    async with aiohttp.ClientSession(timeout=TEST_SEND_TIMEOUT,
                                     headers={"Authorization": f"Bearer {token}"}) as session:
        app[DISPATCHER] = session
        yield


async def send_test(request: web.Request, automation_id: uuid.UUID,
                    body: TestSend) -> tuple[int, Any]:
    """(status, JSON) of the dispatcher's one attempt; RecordNotFound for no such automation."""
    app = request.config_dict  # the console is a sub-application of casestore's
    async with app[POOL].acquire() as conn:
        found(await automation_rows.get_automation(conn, automation_id), NO_AUTOMATION)
    url = app[SETTINGS].dispatcher_url.rstrip("/") + f"/internal/automations/{automation_id}/test"
    try:
        async with app[DISPATCHER].post(
                url, json=body.model_dump(mode="json", exclude_none=True),
                headers={CORRELATION_HEADER: bound_correlation_id() or str(uuid.uuid4())}) as resp:
            status, raw = resp.status, await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("dispatcher_unreachable", error=repr(exc))
        raise DispatcherUnreachable(repr(exc)) from exc
    try:
        return status, orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        log.warning("dispatcher_answer_not_json", status=status)
        raise NotJson(status) from exc
