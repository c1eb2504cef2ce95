"""Operational events end to end: each kind reaches the configured URL as Standard Webhooks
signed JSON through the delivery engine (logged like any delivery), the filter holds, and
nothing about the operational webhook itself is ever sent to it."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from shared.events import Envelope
from shared.settings import Settings
from tests.faults import replaced
from tests.helpers import (
    AutomationFactory,
    FormFactory,
    call,
    new_case,
    publish_raw,
    until,
    wait_dead_lettered,
    webhook_action,
)
from tests.receiver import Received, Receiver, Reply
from tests.stack import Stack


@pytest.fixture
async def operational(api: aiohttp.ClientSession,
                      receiver: Receiver) -> AsyncIterator[dict[str, Any]]:
    """The operational webhook pointed at a fresh URL of the receiver; disabled afterwards."""
    url = receiver.endpoint()
    shown = await call(api, "PUT", "/api/operational-webhook", 200, {"url": url})
    yield {**shown, "url": url}
    await call(api, "PUT", "/api/operational-webhook", 200, {"url": url, "enabled": False})


async def events_of(receiver: Receiver, hook: dict[str, Any], kind: str,
                    about: str | None = None, within: float = 20) -> list[Received]:
    """The operational events of `kind` received (about the automation, if given), verified."""

    async def arrived() -> list[Received]:
        found = []
        for request in receiver.at(hook["url"]):
            body = request.json()
            if body["type"] == kind and (about is None
                                         or body["data"].get("automation_id") == about):
                found.append(request)
        return found

    received: list[Received] = await until(arrived, within=within,
                                           failure=f"no {kind} event arrived")
    for request in received:  # signed as any outgoing webhook, verifiable with the library
        Webhook(hook["secret"]).verify(request.body, request.headers)
    return received


async def test_an_automation_disabled_by_a_410_is_told_signed_and_logged(
        operational: dict[str, Any], make_form: FormFactory,
        make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    assert operational["secret"].startswith("whsec_")
    form = await make_form()
    automation = await make_automation(form["form_id"], receiver.endpoint(Reply(status=410)))
    await new_case(api, form["form_id"])
    [told] = await events_of(receiver, operational, "automation.disabled", automation["id"])
    body = told.json()
    assert body["data"]["reason"] == "the receiver answered 410 Gone"
    assert body["data"]["by"] == "system"
    assert told.headers["webhook-id"].startswith("msg_")
    # Logged as a delivery of the operational webhook, like any other.
    log = await call(api, "GET", "/api/deliveries", 200,
                     params={"automation": operational["automation_id"]})
    assert told.headers["webhook-id"] in {d["webhook_id"] for d in log["deliveries"]}
    assert all(d["case_id"] is None for d in log["deliveries"])
    audit = await call(api, "GET", "/api/audit-log", 200, params={"target": automation["id"]})
    assert (audit["entries"][0]["actor"], audit["entries"][0]["via"]) == (
        "system", "the receiver answered 410 Gone")


async def test_a_failed_delivery_is_told_as_exhausted(
        operational: dict[str, Any], make_form: FormFactory,
        make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    form = await make_form()
    automation = await make_automation(form["form_id"], receiver.endpoint(Reply(status=400)))
    await new_case(api, form["form_id"])
    [told] = await events_of(receiver, operational, "delivery.exhausted", automation["id"])
    data = told.json()["data"]
    assert (data["attempts"], data["last_status"]) == (1, 400)


async def test_a_paused_endpoint_and_its_resumption_are_told(
        make_form: FormFactory, make_automation: AutomationFactory, receiver: Receiver,
        settings: Settings, stack: Stack) -> None:
    form = await make_form()
    url = receiver.endpoint(Reply(status=500), Reply(status=500), Reply())
    automation = await make_automation(form["form_id"], url,
                                       action=webhook_action(url, attempts=3))
    async with replaced(stack, "casestore", breaker_failures=2,
                        breaker_cooldown_seconds=1.0) as other, aiohttp.ClientSession(
            base_url=other.url("casestore"),
            headers={"Authorization": f"Bearer {settings.admin_token}"}) as api:
        hook_url = receiver.endpoint()
        hook = {**await call(api, "PUT", "/api/operational-webhook", 200, {"url": hook_url}),
                "url": hook_url}
        try:
            await new_case(api, form["form_id"])
            [paused] = await events_of(receiver, hook, "endpoint.paused", automation["id"])
            assert paused.json()["data"]["consecutive_failures"] == 2
            await events_of(receiver, hook, "endpoint.resumed", automation["id"])
        finally:
            await call(api, "PUT", "/api/operational-webhook", 200,
                       {"url": hook_url, "enabled": False})


async def test_a_dead_letter_and_a_parked_event_are_told(
        operational: dict[str, Any], receiver: Receiver, settings: Settings) -> None:
    marker = f"poison-{uuid.uuid4().hex}".encode()
    await publish_raw(settings, "case.create_requested", [b"not json " + marker])
    [told] = await events_of(receiver, operational, "dead_letter.added")
    assert told.json()["data"]["added"] >= 1
    await wait_dead_lettered(settings, marker)  # taken out again
    parked = Envelope(type="test.parked", data={}, correlation_id="x" * 300)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("INSERT INTO outbox (event_id, routing_key, envelope)"
                           " VALUES ($1, 'case.created', $2::jsonb)",
                           parked.id, parked.to_bytes().decode())
    finally:
        await conn.close()
    events = await events_of(receiver, operational, "outbox.parked")
    assert str(parked.id) in {e.json()["data"]["event_id"] for e in events}


async def test_only_the_chosen_events_are_sent(
        api: aiohttp.ClientSession, make_form: FormFactory,
        make_automation: AutomationFactory, receiver: Receiver) -> None:
    hook_url = receiver.endpoint()
    hook = {**await call(api, "PUT", "/api/operational-webhook", 200,
                         {"url": hook_url, "events": ["delivery.exhausted"]}), "url": hook_url}
    try:
        assert hook["events"] == ["delivery.exhausted"]
        form = await make_form()
        gone = await make_automation(form["form_id"], receiver.endpoint(Reply(status=410)))
        await new_case(api, form["form_id"])
        await events_of(receiver, hook, "delivery.exhausted", gone["id"])
        assert {r.json()["type"] for r in receiver.at(hook_url)} == {"delivery.exhausted"}
    finally:
        await call(api, "PUT", "/api/operational-webhook", 200,
                   {"url": hook_url, "enabled": False})


async def test_the_operational_webhooks_own_failures_are_never_told(
        api: aiohttp.ClientSession, make_form: FormFactory,
        make_automation: AutomationFactory, receiver: Receiver, settings: Settings) -> None:
    """Its endpoint fails until its circuit opens: no endpoint.paused about it is even
    written, let alone sent (it would feed on itself)."""
    hook_url = receiver.endpoint(Reply(status=500))
    shown = await call(api, "PUT", "/api/operational-webhook", 200, {"url": hook_url})
    try:
        form = await make_form()
        failing = await make_automation(form["form_id"], receiver.endpoint(Reply(status=400)))
        for _ in range(settings.breaker_failures + 1):
            await new_case(api, form["form_id"])

        async def paused() -> bool:
            found = await call(api, "GET", "/api/operational-webhook", 200)
            automation = found["automation_id"]
            conn = await asyncpg.connect(settings.database_url)
            try:
                state = await conn.fetchval("SELECT state FROM endpoint_health"
                                            " WHERE automation_id = $1", uuid.UUID(automation))
            finally:
                await conn.close()
            return bool(state == "open")

        await until(paused, within=30)
        conn = await asyncpg.connect(settings.database_url)
        try:
            kinds = await conn.fetch("SELECT payload->>'type' AS t, payload->'data' AS d"
                                     " FROM deliveries WHERE automation_id = $1",
                                     uuid.UUID(shown["automation_id"]))
        finally:
            await conn.close()
        about = [(r["t"], orjson.loads(r["d"]).get("automation_id")) for r in kinds]
        assert ("delivery.exhausted", failing["id"]) in about
        assert not [kind for kind, of in about if of == shown["automation_id"]]
    finally:
        await call(api, "PUT", "/api/operational-webhook", 200,
                   {"url": hook_url, "enabled": False})


async def test_only_an_admin_sets_it_and_a_viewer_sees_no_secret(
        operational: dict[str, Any], api: aiohttp.ClientSession, stack: Stack) -> None:
    tokens = {}
    for role in ("viewer", "editor"):
        username = f"op-{role}-{uuid.uuid4().hex[:6]}"
        await call(api, "POST", "/api/accounts", 201, {"username": username, "role": role})
        tokens[role] = (await call(api, "POST", f"/api/accounts/{username}/tokens", 201,
                                   {"name": "t"}))["token"]
    for role, token in tokens.items():
        async with aiohttp.ClientSession(base_url=stack.url("casestore"), headers={
                "Authorization": f"Bearer {token}"}) as session:
            shown = await call(session, "GET", "/api/operational-webhook", 200)
            assert shown["secret"] == "***", role
            await call(session, "PUT", "/api/operational-webhook", 403,
                       {"url": operational["url"]})
    rotated = await call(api, "POST", "/api/operational-webhook/rotate-secret", 200)
    assert rotated["secret"] not in (operational["secret"], "***")
