"""Hostile input at the edges: a clear 4xx, never a 500, and nothing that can stall the pipeline."""

import uuid
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import structlog

from shared.event_payloads import CaseCreateRequested
from shared.events import CASE_CREATE_REQUESTED, new_event
from shared.settings import Settings
from tests.helpers import (
    EventTap,
    FormFactory,
    publish_raw,
    wait_dead_lettered,
    wait_for_cases,
    webhook_action,
)
from tests.hostile import raw_request
from tests.receiver import Receiver
from tests.stack import Stack

BIG = 123456789012345678901234567890


async def test_a_correlation_id_that_is_not_utf8_gets_a_new_one_not_a_500(
        stack: Stack, make_form: FormFactory) -> None:
    hook = await make_form()
    head = (f"POST /hooks/{hook['token']} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\n").encode() + b"X-Correlation-ID: a\xff\xfeb\r\n"
    answer = await raw_request(stack.port("ingest"), head, b'{"text-field": "x"}')
    assert answer.status == 200
    assert uuid.UUID(answer.headers["x-correlation-id"])
    admin = (f"GET /api/forms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
             f"{stack.settings.admin_token}\r\n").encode() + b"X-Correlation-ID: \xc3\x28\r\n"
    answer = await raw_request(stack.port("casestore"), admin)
    assert answer.status == 200
    assert uuid.UUID(answer.headers["x-correlation-id"])


async def test_an_overlong_correlation_id_is_replaced_and_the_case_event_still_goes_out(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession,
        events: EventTap) -> None:
    """300 characters cannot travel as an AMQP short string: it once stalled the outbox."""
    hook = await make_form()
    long_id = "c" * 300
    async with http.post(hook["url"], json={"text-field": "via ingest"},
                         headers={"X-Correlation-ID": long_id}) as resp:
        assert resp.status == 200
        replaced = resp.headers["X-Correlation-ID"]
    assert replaced != long_id
    async with api.post(f"/api/forms/{hook['form_id']}/cases", json={"data": {"text-field": "a"}},
                        headers={"X-Correlation-ID": long_id}) as resp:
        assert resp.status == 201
        case_id = (await resp.json())["id"]
    created = await events.next(lambda e: e["type"] == "case.created" and e["case_id"] == case_id)
    assert created["correlation_id"] == resp.headers["X-Correlation-ID"] != long_id
    cases = await wait_for_cases(api, hook["form_id"], 2)
    assert {c["data"]["text-field"] for c in cases} == {"via ingest", "a"}


async def test_a_well_formed_correlation_id_is_kept(
        make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with http.post(hook["url"], json={"text-field": "x"},
                         headers={"X-Correlation-ID": "order-1001/retry:2"}) as resp:
        assert resp.headers["X-Correlation-ID"] == "order-1001/retry:2"


@pytest.mark.parametrize("amount", [BIG, -BIG, str(BIG), "9" * 5000, 2**64 - 1])
async def test_numbers_beyond_64_bits_are_value_not_numeric_on_ingest(
        amount: Any, make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    body = b'{"text-field": "x", "amount": ' + (
        orjson.dumps(amount) if isinstance(amount, str) else str(amount).encode()) + b"}"
    async with http.post(hook["url"], data=body,
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"] == [{
            "field": "amount", "code": "value_not_numeric",
            "message": "expected an integer within 64 bits"}]


async def test_numbers_beyond_64_bits_are_value_not_numeric_on_the_admin_api(
        make_form: FormFactory, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    body = b'{"data": {"text-field": "x", "amount": ' + str(BIG).encode() + b"}}"
    async with api.post(f"/api/forms/{hook['form_id']}/cases", data=body) as resp:
        assert resp.status == 400
        errors = (await resp.json())["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [("data.amount", "value_not_numeric")]


async def test_a_float_beyond_64_bits_written_as_a_float_stays_a_number(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with http.post(hook["url"], data=b'{"text-field": "x", "amount": 1.5e30}',
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 200
    [case] = await wait_for_cases(api, hook["form_id"], 1)
    assert case["data"]["amount"] == 1.5e30


async def form_revision(settings: Settings, form_id: str) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return int(await conn.fetchval("SELECT revision FROM forms WHERE id = $1", form_id))
    finally:
        await conn.close()


def command(form_id: str, data: dict[str, Any], revision: int | None) -> bytes:
    body = CaseCreateRequested(webhook_id=uuid.uuid4(), data=data,
                               creator="Addon - Incoming Webhook", form_revision=revision)
    return new_event(CASE_CREATE_REQUESTED, body, form_id=form_id).to_bytes()


async def test_casestore_dead_letters_a_command_that_breaks_the_form_it_was_checked_against(
        make_form: FormFactory, settings: Settings, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    revision = await form_revision(settings, hook["form_id"])
    marker = f"smuggled-{uuid.uuid4().hex}"
    await publish_raw(settings, CASE_CREATE_REQUESTED, [
        command(hook["form_id"], {"text-field": "x", marker: "value"}, revision),
        command(hook["form_id"], {"text-field": "fine"}, revision)])
    await wait_dead_lettered(settings, marker.encode())
    [case] = await wait_for_cases(api, hook["form_id"], 1)
    assert case["data"] == {"text-field": "fine"}


async def test_a_command_that_waited_through_a_form_change_keeps_what_still_fits(
        make_form: FormFactory, settings: Settings, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    stale = await form_revision(settings, hook["form_id"]) - 1
    with structlog.testing.capture_logs() as logs:
        await publish_raw(settings, CASE_CREATE_REQUESTED, [
            command(hook["form_id"], {"text-field": "kept", "gone-field": "dropped"}, stale)])
        [case] = await wait_for_cases(api, hook["form_id"], 1)
    assert case["data"] == {"text-field": "kept"}
    assert {(e["field"], e["code"]) for e in logs
            if e["event"] == "command_value_dropped_form_changed"} == {
        ("gone-field", "unknown_field")}


async def test_a_command_without_a_form_revision_is_checked_against_the_current_form(
        make_form: FormFactory, settings: Settings, api: aiohttp.ClientSession) -> None:
    """A forged or old command names no revision: it claims no form change, so it gets no
    leniency for one (it once stored a case without its mandatory field, logged as 'value
    dropped, form changed' though the form had not changed)."""
    hook = await make_form()
    marker = f"no-revision-{uuid.uuid4().hex}"
    with structlog.testing.capture_logs() as logs:
        await publish_raw(settings, CASE_CREATE_REQUESTED, [
            command(hook["form_id"], {"email": f"{marker}@example.com"}, None),
            command(hook["form_id"], {"text-field": "fits", "amount": 3}, None)])
        headers = await wait_dead_lettered(settings, marker.encode())
        [case] = await wait_for_cases(api, hook["form_id"], 1)
    assert case["data"] == {"text-field": "fits", "amount": 3}
    error = str(headers["x-casewire-error"])
    assert "the current form (the command names no form revision)" in error
    assert "text-field: field_required" in error
    assert not [e for e in logs if e["event"] == "command_value_dropped_form_changed"]


async def test_an_automation_with_an_integer_beyond_64_bits_is_a_400(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    body = orjson.dumps({"name": "big", "when": [{"event": "case_created"}],
                         "if": {"field": "amount", "op": "gt", "value": 0},
                         "action": webhook_action(receiver.endpoint())})
    body = body.replace(b'"value":0', b'"value":' + str(BIG).encode())
    async with api.post(f"/api/forms/{hook['form_id']}/automations", data=body) as resp:
        assert resp.status == 400
        errors = (await resp.json())["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [("if.value", "value_not_numeric")]
