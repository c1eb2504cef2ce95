"""Durability and concurrency of incoming webhooks: numbering, idempotency, restarts, limits."""

import asyncio
import uuid
from typing import Any

import aiohttp
import orjson

from shared.event_payloads import CaseCreateRequested
from shared.events import CASE_CREATE_REQUESTED, new_event
from shared.logging import bound_context
from shared.settings import Settings
from tests.helpers import (
    EventTap,
    FormFactory,
    publish_raw,
    until,
    wait_dead_lettered,
    wait_for_cases,
)
from tests.stack import Stack, free_port

BODY = {"text-field": "x"}


async def test_200_parallel_posts_give_case_numbers_exactly_1_to_200(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form()

    async def post(i: int) -> int:
        async with http.post(hook["url"], json={"text-field": f"case {i}"}) as resp:
            return resp.status

    statuses = await asyncio.gather(*(post(i) for i in range(200)))
    assert statuses == [200] * 200
    cases = await wait_for_cases(api, hook["form_id"], 200, within=60)
    assert sorted(c["case_number"] for c in cases) == list(range(1, 201))
    assert len({c["data"]["text-field"] for c in cases}) == 200


async def test_same_create_requested_event_published_twice_makes_one_case(
        make_form: FormFactory, settings: Settings, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with api.get(f"/api/forms/{hook['form_id']}/incoming-webhook") as resp:
        assert resp.status == 200
    command = CaseCreateRequested(webhook_id=uuid.uuid4(), data={"text-field": "once"},
                                  creator="Addon - Incoming Webhook")
    with bound_context(correlation_id="redelivery-test"):
        event = new_event(CASE_CREATE_REQUESTED, command, form_id=hook["form_id"])
    await publish_raw(settings, CASE_CREATE_REQUESTED, [event.to_bytes()] * 2)
    await asyncio.sleep(1.0)  # give the second copy time to be (not) applied
    [case] = await wait_for_cases(api, hook["form_id"], 1)
    assert case["id"] == str(event.id)


async def test_retried_request_with_same_idempotency_key_creates_one_case(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    headers = {"Idempotency-Key": "order-4711"}
    for _ in range(3):
        async with http.post(hook["url"], json=BODY, headers=headers) as resp:
            assert resp.status == 200
    async with http.post(hook["url"], json=BODY, headers={"Idempotency-Key": "order-4712"}) as resp:
        assert resp.status == 200
    await asyncio.sleep(1.0)
    await wait_for_cases(api, hook["form_id"], 2)


async def test_cases_posted_while_casestore_is_down_all_appear_after_restart(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession,
        stack: Stack) -> None:
    hook = await make_form()
    await stack.stop("casestore")
    try:
        async def post(i: int) -> int:
            async with http.post(hook["url"], json={"text-field": f"offline {i}"}) as resp:
                return resp.status

        assert await asyncio.gather(*(post(i) for i in range(50))) == [200] * 50
    finally:
        await stack.start("casestore")
    cases = await wait_for_cases(api, hook["form_id"], 50, within=60)
    assert sorted(c["case_number"] for c in cases) == list(range(1, 51))


async def test_unparseable_message_is_dead_lettered_not_requeued(
        settings: Settings, stack: Stack) -> None:
    marker = uuid.uuid4().hex.encode()
    await publish_raw(settings, CASE_CREATE_REQUESTED, [b"not json " + marker])
    await wait_dead_lettered(settings, marker)


async def test_correlation_id_of_the_request_is_carried_into_the_case_event(
        make_form: FormFactory, http: aiohttp.ClientSession, events: EventTap) -> None:
    hook = await make_form()
    async with http.post(hook["url"], json=BODY, headers={"X-Correlation-ID": "trace-42"}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Correlation-ID"] == "trace-42"
    request = await events.next(lambda e: e["type"] == "case.create_requested"
                                and e["form_id"] == hook["form_id"])
    created = await events.next(lambda e: e["type"] == "case.created"
                                and e["form_id"] == hook["form_id"])
    assert request["correlation_id"] == created["correlation_id"] == "trace-42"
    assert created["causation_id"] == request["id"]


async def test_rate_limit_answers_429_with_retry_after(
        make_form: FormFactory, http: aiohttp.ClientSession, settings: Settings) -> None:
    hook = await make_form()
    strict = Stack(settings.model_copy(update={"rate_limit_per_second": 0.5,
                                               "rate_limit_burst": 2,
                                               "ingest_port": free_port()}))
    await strict.start("ingest")
    try:
        url = f"{strict.url('ingest')}/hooks/{hook['token']}"
        statuses = []
        for _ in range(3):
            async with http.post(url, json=BODY) as resp:
                statuses.append(resp.status)
                retry_after = resp.headers.get("Retry-After")
        assert statuses == [200, 200, 429]
        assert retry_after is not None
        assert int(retry_after) >= 1
    finally:
        await strict.stop("ingest")




async def test_changed_form_is_in_force_after_its_event(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with api.get(f"/api/forms/{hook['form_id']}") as resp:
        form = await resp.json()
    form["fields"].append({"id": "ticket", "label": "Ticket", "type": "number",
                           "mandatory": True})
    async with api.put(f"/api/forms/{hook['form_id']}", json=form) as resp:
        assert resp.status == 200

    async def refused() -> Any:
        async with http.post(hook["url"], json=BODY) as resp:
            return orjson.loads(await resp.read()) if resp.status == 400 else None

    body = await until(refused, failure="ingest never picked up the changed form")
    assert body["errors"] == [{"field": "ticket", "code": "field_required",
                               "message": "the field is mandatory and data is missing"}]
