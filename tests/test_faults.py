"""Broker outages: nothing confirmed is lost, nothing unconfirmed is claimed."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import orjson
import pytest

from shared.settings import Settings
from tests.faults import CuttableProxy, replaced
from tests.helpers import (
    AutomationFactory,
    EventTap,
    FormFactory,
    call,
    names,
    publish_raw,
    status_of,
    until,
    wait_for_cases,
)
from tests.receiver import Receiver, Reply
from tests.stack import Stack, free_port


@pytest.fixture
async def ingest_via_proxy(settings: Settings, stack: Stack) -> AsyncIterator[
        tuple[Stack, CuttableProxy]]:
    """A second ingest whose only route to RabbitMQ is a proxy the test can cut."""
    broker_port = urlsplit(settings.amqp_url).port or 5672
    proxy = CuttableProxy(broker_port)
    await proxy.start()
    proxied = Stack(settings.model_copy(update={
        "amqp_url": f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
        "ingest_port": free_port(), "publish_timeout": 1.0}))
    await proxied.start("ingest")
    try:
        yield proxied, proxy
    finally:
        await proxy.cut()
        await proxied.stop("ingest")


async def test_broker_outage_gives_503_and_recovery_gives_200_with_nothing_lost(
        ingest_via_proxy: tuple[Stack, CuttableProxy], make_form: FormFactory,
        http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    proxied, proxy = ingest_via_proxy
    hook = await make_form()
    url = f"{proxied.url('ingest')}/hooks/{hook['token']}"
    async with http.post(url, json={"text-field": "before"}) as resp:
        assert resp.status == 200
    await proxy.cut()
    # A request racing the cut may have reached the broker (its answer is outcome_unknown);
    # once ingest has seen the connection drop, it answers `unavailable` at once.
    await until(lambda: not_ready(http, proxied), 5)
    async with http.post(url, json={"text-field": "during"}) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["errors"][0]["code"] == "unavailable"
    async with http.get(f"{proxied.url('ingest')}/readyz") as resp:
        assert resp.status == 503
    await proxy.start()

    async def accepted() -> bool:
        async with http.post(url, json={"text-field": "after"}) as resp:
            assert resp.status in (200, 503)
            return resp.status == 200

    await until(accepted, 20)  # the robust connection reconnects with backoff
    cases = await wait_for_cases(api, hook["form_id"], 2)
    assert sorted(c["data"]["text-field"] for c in cases) == ["after", "before"]


async def test_dispatcher_losing_the_broker_mid_delivery_reports_it_once_back(
        settings: Settings, stack: Stack, make_form: FormFactory,
        make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    """The attempt in flight finishes, its outcome waits for the broker, and nothing is sent
    twice (the attempt message was acknowledged on arrival; a copy that comes back because its
    acknowledgement was lost is recognised by the dispatcher that sent it)."""
    broker_port = urlsplit(settings.amqp_url).port or 5672
    proxy = CuttableProxy(broker_port)
    await proxy.start()
    hook = await make_form()
    url = receiver.endpoint(Reply(delay=3), Reply())
    automation = await make_automation(hook["form_id"], url)
    try:
        async with replaced(stack, "dispatcher",
                            amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/"):
            async with api.post(f"/api/forms/{hook['form_id']}/cases",
                                json={"data": {"text-field": "x"}}) as resp:
                assert resp.status == 201
            await receiver.wait_for(url, 1)
            await proxy.cut()  # the request is still waiting for its answer
            await asyncio.sleep(1)
            await proxy.start()
            await until(lambda: deliveries_of(api, automation["id"], state="succeeded"), 30,
                        "the outcome never reached casestore")
            await asyncio.sleep(0.5)
            assert len(receiver.at(url)) == 1
    finally:
        await proxy.cut()


async def test_stopping_the_dispatcher_lets_the_delivery_in_hand_finish(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    """A rolling deploy drains: the webhook being sent completes and is not sent twice."""
    hook = await make_form()
    url = receiver.endpoint(Reply(delay=1))
    automation = await make_automation(hook["form_id"], url)
    async with api.post(f"/api/forms/{hook['form_id']}/cases",
                        json={"data": {"text-field": "x"}}) as resp:
        assert resp.status == 201
    await receiver.wait_for(url, 1)
    try:
        await stack.stop("dispatcher")  # returns once the delivery in hand is recorded
    finally:
        await stack.start("dispatcher")
    found = await until(lambda: deliveries_of(api, automation["id"]))
    assert [(d["state"], d["attempt_count"]) for d in found] == [("succeeded", 1)]
    await asyncio.sleep(1)
    assert len(receiver.at(url)) == 1


async def test_an_event_coming_back_after_its_delivery_succeeded_sends_nothing_again(
        settings: Settings, stack: Stack, make_form: FormFactory,
        make_automation: AutomationFactory, api: aiohttp.ClientSession, receiver: Receiver,
        events: EventTap) -> None:
    """A dispatcher that crashed after recording a delivery, before acking its event."""
    hook = await make_form()
    url = receiver.endpoint(Reply())
    automation = await make_automation(hook["form_id"], url)
    async with api.post(f"/api/forms/{hook['form_id']}/cases",
                        json={"data": {"text-field": "x"}}) as resp:
        case_id = (await resp.json())["id"]
    created = await events.next(lambda e: e["type"] == "case.created" and e["case_id"] == case_id)
    await receiver.wait_for(url, 1)
    await wait_for_delivery(api, automation["id"], "succeeded")
    await stack.stop("dispatcher")
    try:
        await publish_raw(settings, "case.created", [orjson.dumps(created)])
        await return_once(settings, "dispatcher")  # now marked redelivered, as after a crash
    finally:
        await stack.start("dispatcher")
    await asyncio.sleep(1.5)
    assert len(receiver.at(url)) == 1


async def not_ready(http: aiohttp.ClientSession, proxied: Stack) -> bool:
    return await status_of(http, f"{proxied.url('ingest')}/readyz") == 503


async def deliveries_of(api: aiohttp.ClientSession, automation_id: str,
                        **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await call(api, "GET", "/api/deliveries", 200, params={
        "automation": automation_id, **params}))["deliveries"]
    return found


async def wait_for_delivery(api: aiohttp.ClientSession, automation_id: str, state: str) -> None:
    async def in_state() -> bool:
        return [d["state"] for d in await deliveries_of(api, automation_id)] == [state]

    await until(in_state, failure=f"no {state} delivery recorded")


async def return_once(settings: Settings, consumer: str) -> None:
    """Take the message at the head of a work queue and give it back, as a crash would."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(names(settings).queue(consumer))

        async def given_back() -> bool:
            message = await queue.get(fail=False)
            if message is not None:
                await message.nack(requeue=True)
            return message is not None

        await until(given_back, 5, "the work queue stayed empty")
