"""The delivery engine end to end, with the real dispatcher: endpoints isolated from each other,
waits between attempts that survive the services, secrets rotated with an overlap."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import structlog
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.dispatcher.api import DEPENDENCIES
from shared.settings import Settings
from tests.faults import CuttableProxy, replaced
from tests.helpers import (
    AutomationFactory,
    FormFactory,
    call,
    doc_snippet,
    new_case,
    until,
    webhook_action,
)
from tests.receiver import Receiver, Reply
from tests.stack import Stack


async def delivery_of(api: aiohttp.ClientSession, automation: dict[str, Any],
                      state: str, within: float = 20) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        found = (await call(api, "GET", "/api/deliveries", 200,
                            params={"automation": automation["id"], "state": state}))
        return found["deliveries"][0] if found["deliveries"] else None

    found: dict[str, Any] = await until(probe, within=within)
    return await call(api, "GET", f"/api/deliveries/{found['id']}", 200)  # type: ignore[no-any-return]


@pytest.fixture
async def stuck() -> AsyncIterator[Receiver]:
    """A receiver of its own whose hanging requests are released only at the end."""
    async with Receiver.running() as running:
        yield running


async def test_a_hanging_endpoint_with_300_waiting_does_not_delay_another(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver, stuck: Receiver, stack: Stack) -> None:
    slow_form, fast_form = await make_form(), await make_form()
    hanging = await make_automation(slow_form["form_id"], stuck.endpoint(Reply(hang=True)),
                                    action=webhook_action(stuck.endpoint(Reply(hang=True)),
                                                          timeout=60, attempts=3))
    fast_url = receiver.endpoint()
    await make_automation(fast_form["form_id"], fast_url)

    async def post_to_arrival(count: int) -> list[float]:
        took = []
        for n in range(count):
            started = asyncio.get_running_loop().time()
            await new_case(api, fast_form["form_id"])
            arrived = await receiver.wait_for(fast_url, len(receiver.at(fast_url)) + 1)
            took.append(arrived[-1].arrived_at - started)
            del n
        return took

    baseline = await post_to_arrival(5)
    await asyncio.gather(*(new_case(api, slow_form["form_id"]) for _ in range(300)))
    limit = stack.settings.endpoint_initial_concurrency  # it never answers: nothing to adapt to
    await until(lambda: asyncio.sleep(0, result=len(stuck.requests) >= limit))  # limit used up
    during = await post_to_arrival(10)
    try:
        # Generous: the machine is shared; without isolation this took the hang's 60 s.
        assert max(during) < max(5 * sorted(baseline)[2], 2.0), (baseline, during)
        assert len(stuck.requests) == limit  # never more than its limit in flight
    finally:
        await call(api, "DELETE", f"/api/automations/{hanging['id']}", 200)


async def test_the_wait_between_attempts_survives_a_dispatcher_stop(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver, stack: Stack) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=503, headers={"Retry-After": "2"}), Reply())
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, attempts=3))
    await new_case(api, hook["form_id"])
    await receiver.wait_for(url, 1)
    await stack.stop("dispatcher")  # between the two attempts
    try:
        await asyncio.sleep(2.5)
        assert len(receiver.at(url)) == 1
    finally:
        await stack.start("dispatcher")
    done = await delivery_of(api, automation, "succeeded")
    assert [a["number"] for a in done["attempts"]] == [1, 2]
    await asyncio.sleep(0.5)
    first, second = receiver.at(url)  # neither lost nor repeated
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


async def test_first_attempts_waiting_in_a_stopped_dispatcher_go_out_when_their_lease_ends(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver, stack: Stack) -> None:
    """A dispatcher keeps the first attempts of an endpoint that answers in time waiting for
    its slot instead of sending them through the schedule. Stopped before it sent them, it
    loses none and charges none: casestore hands each out again when its lease runs out."""
    hook = await make_form()
    url = receiver.endpoint(Reply(delay=2.0))
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, attempts=1, timeout=10))
    async with replaced(stack, "dispatcher", endpoint_concurrency=1,
                        first_attempt_wait_seconds=12.0, shutdown_grace_seconds=0.0,
                        delivery_lease_margin_seconds=0.5) as other:
        held = other.runners["dispatcher"].app[DEPENDENCIES].in_flight.held
        endpoint = uuid.UUID(automation["id"])
        await new_case(api, hook["form_id"])
        await receiver.wait_for(url, 1)  # from now on the dispatcher knows its 2 s answers
        await until(lambda: asyncio.sleep(0, result=not held[endpoint]))
        await asyncio.gather(*(new_case(api, hook["form_id"]) for _ in range(6)))
        # One sending, five waiting for the one slot: 5 rounds of 2 s are within the 12 s.
        await until(lambda: asyncio.sleep(0, result=held[endpoint] == 6))
        assert len(receiver.at(url)) <= 2
    # Stopped with no grace: the attempt in flight is cut off, the five waiting never start.
    async def all_succeeded() -> list[dict[str, Any]] | None:
        found = await call(api, "GET", "/api/deliveries", 200,
                           params={"automation": automation["id"], "state": "succeeded"})
        return found["deliveries"] if len(found["deliveries"]) == 7 else None

    done = await until(all_succeeded, within=60)
    assert [d["attempt_count"] for d in done] == [1] * 7  # went out again as attempt #1
    arrived = {r.headers["webhook-id"] for r in receiver.at(url)}
    assert arrived == {d["webhook_id"] for d in done}


@pytest.mark.parametrize(("quick", "cut_for"), [(False, 11.5), (True, 1.0)],
                         ids=["outcome-not-reported-in-its-lease", "request-carrying-it-lost"])
async def test_an_attempt_whose_outcome_never_reached_casestore_goes_out_again(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver, stack: Stack, quick: bool,
        cut_for: float) -> None:
    """The dispatcher loses the broker as its receiver gets the first attempt. Either its
    report cannot go out within the attempt's lease (10 s timeout + 0.5 s), or, for an endpoint
    known to answer at once, the request that was to carry it is lost. The same dispatcher,
    back on the broker, sends the attempt again when casestore hands it out again (it
    remembers the attempts it began only while their lease lasts)."""
    hook = await make_form()
    url = receiver.endpoint(*([Reply()] if quick else []), Reply(delay=0.08 if quick else 0.5),
                            Reply())
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, timeout=10))
    proxy = CuttableProxy(urlsplit(settings.amqp_url).port or 5672)
    await proxy.start()
    try:
        async with replaced(stack, "dispatcher", delivery_lease_margin_seconds=0.5,
                            amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/"):
            if quick:  # from its answer on, the dispatcher knows the endpoint answers at once
                await new_case(api, hook["form_id"])
                await delivery_of(api, automation, "succeeded")
            case = await new_case(api, hook["form_id"])
            sent = len(receiver.at(url)) + 1
            await receiver.wait_for(url, sent)
            await proxy.cut()
            await asyncio.sleep(cut_for)
            await proxy.start()
            again = await receiver.wait_for(url, sent + 1, within=40)

            async def settled() -> dict[str, Any] | None:
                found = await call(api, "GET", "/api/deliveries", 200, params={
                    "automation": automation["id"], "state": "succeeded"})
                ours = [d for d in found["deliveries"] if d["case_id"] == case["id"]]
                return ours[0] if ours else None

            done = await until(settled, within=20)
            assert again[-1].headers["webhook-id"] == again[-2].headers["webhook-id"] \
                == done["webhook_id"]
            logged = await call(api, "GET", f"/api/deliveries/{done['id']}", 200)
            assert [(a["number"], a["response_status"]) for a in logged["attempts"]] == [(1, 200)]
    finally:
        await proxy.cut()


async def test_the_wait_between_attempts_survives_losing_the_broker(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver, stack: Stack) -> None:
    """casestore and the dispatcher both lose RabbitMQ between two attempts, as in a restart."""
    hook = await make_form()
    url = receiver.endpoint(Reply(status=503, headers={"Retry-After": "3"}), Reply())
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, attempts=2))
    proxy = CuttableProxy(urlsplit(settings.amqp_url).port or 5672)
    await proxy.start()
    through = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    try:
        async with replaced(stack, "dispatcher", amqp_url=through), \
                replaced(stack, "casestore", amqp_url=through) as other, \
                aiohttp.ClientSession(base_url=other.url("casestore"), headers={
                    "Authorization": f"Bearer {settings.admin_token}"}) as proxied_api:
            await new_case(proxied_api, hook["form_id"])
            await receiver.wait_for(url, 1)
            await proxy.cut()
            await asyncio.sleep(3.5)
            await proxy.start()
            # The robust connections come back after their reconnect delay (5 s, and again).
            done = await delivery_of(proxied_api, automation, "succeeded", within=60)
            assert [(a["number"], a["response_status"]) for a in done["attempts"]] == [
                (1, 503), (2, 200)]
            await asyncio.sleep(0.5)
            assert len(receiver.at(url)) == 2
    finally:
        await proxy.cut()
    del api


async def test_410_gone_disables_the_automation(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=410))
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, attempts=3))

    async def disabled() -> dict[str, Any] | None:
        shown = await call(api, "GET", f"/api/automations/{automation['id']}", 200)
        return None if shown["enabled"] else shown

    with structlog.testing.capture_logs() as logs:
        await new_case(api, hook["form_id"])
        failed = await delivery_of(api, automation, "failed")
        assert failed["attempt_count"] == 1  # final at once
        shown = await until(disabled)
    assert shown["disabled_reason"] == "the receiver answered 410 Gone"
    assert [(e["log_level"], e["reason"]) for e in logs if e["event"] == "automation_disabled"
            and e["automation_id"] == automation["id"]] == [
        ("warning", "the receiver answered 410 Gone")]


async def test_a_rotated_secret_signs_beside_the_new_one_until_its_overlap_ends(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    automation = await make_automation(hook["form_id"], url,
                                       when=[{"event": "case_created"}])
    old = automation["secret"]
    rotated = await call(api, "POST", f"/api/automations/{automation['id']}/rotate-secret", 200)
    new = rotated["secret"]
    assert new != old
    assert rotated["previous_secret_until"] is not None
    await new_case(api, hook["form_id"])
    [during] = await receiver.wait_for(url, 1)
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(during.body, during.headers)
    Webhook(old).verify(during.body, during.headers)  # receivers may switch at their pace
    ended = await call(api, "POST", f"/api/automations/{automation['id']}/rotate-secret", 200,
                       params={"overlap_hours": "0"})
    await new_case(api, hook["form_id"])
    after = (await receiver.wait_for(url, 2))[1]
    Webhook(ended["secret"]).verify(after.body, after.headers)
    for stale in (old, new):
        with pytest.raises(WebhookVerificationError):
            Webhook(stale).verify(after.body, after.headers)
    await call(api, "POST", f"/api/automations/{automation['id']}/rotate-secret", 400,
               params={"overlap_hours": "-1"})


async def test_the_docs_form_verification_snippet_verifies_a_real_send(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, protocol="form"))
    await new_case(api, hook["form_id"])
    [seen] = await receiver.wait_for(url, 1)
    scope = doc_snippet("docs/delivery.md", "verify-form")
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert scope["verify"](automation["secret"], headers, seen.body) is True
    assert scope["verify"](automation["secret"], headers, seen.body + b"&x=1") is False
