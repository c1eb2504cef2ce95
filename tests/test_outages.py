"""A dependency outage is not a poison message: held messages spend none of their deliveries."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import pytest

from shared.consumer import Consumer
from shared.events import CASE_CREATED, Envelope, new_event
from shared.outages import OutageGate
from shared.settings import Settings
from tests.faults import CuttableProxy, replaced
from tests.helpers import dead_letters_mentioning, names, sample_form, until, wait_for_cases
from tests.stack import Stack


@pytest.fixture
async def casestore_via_proxy(settings: Settings, stack: Stack) -> AsyncIterator[
        tuple[Stack, CuttableProxy]]:
    """The only casestore, reaching Postgres through a proxy the test can cut."""
    port = urlsplit(settings.database_url).port or 5432
    proxy = CuttableProxy(port)
    await proxy.start()
    try:
        async with replaced(stack, "casestore", outage_retry_seconds=0.2,
                            outage_hold_seconds=60.0,
                            database_url=settings.database_url.replace(
                                f":{port}/", f":{proxy.port}/")) as proxied:
            yield proxied, proxy
    finally:
        await proxy.start()


async def post_cases(http: aiohttp.ClientSession, url: str, texts: list[str]) -> None:
    for text in texts:
        async with http.post(url, json={"text-field": text}) as resp:
            assert resp.status == 200, await resp.text()


async def ready_in(settings: Settings, queue: str) -> int:
    """Messages waiting in a queue that no consumer has taken."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(names(settings).queue(queue), passive=True)
        return int(declared.declaration_result.message_count or 0)


async def test_database_outage_longer_than_the_delivery_limit_loses_and_dead_letters_nothing(
        casestore_via_proxy: tuple[Stack, CuttableProxy], settings: Settings, stack: Stack,
        http: aiohttp.ClientSession) -> None:
    proxied, proxy = casestore_via_proxy
    async with aiohttp.ClientSession(
            base_url=proxied.url("casestore"),
            headers={"Authorization": f"Bearer {settings.admin_token}"}) as proxied_api:
        form_id = f"f-{uuid.uuid4().hex[:12]}"
        async with proxied_api.post("/api/forms", json=sample_form(form_id)) as resp:
            assert resp.status == 201
        async with proxied_api.put(f"/api/forms/{form_id}/incoming-webhook",
                                   json={"enabled": True}) as resp:
            url = f"{stack.url('ingest')}/hooks/{(await resp.json())['token']}"
        await post_cases(http, url, ["before"])
        await proxy.cut()
        await post_cases(http, url, [f"during {i}" for i in range(10)])
        # Five deliveries 0.2 s apart would have used up the delivery limit several times over.
        await asyncio.sleep(settings.delivery_limit * 0.2 * 4)
        await post_cases(http, url, [f"later {i}" for i in range(10)])
        await asyncio.sleep(0.5)
        assert await ready_in(settings, "casestore") >= 10  # paused: takes no new messages
        await proxy.start()
        cases = await wait_for_cases(proxied_api, form_id, 21, within=30)
    assert sorted(c["case_number"] for c in cases) == list(range(1, 22))
    assert await dead_letters_mentioning(settings, form_id.encode()) == 0
    assert await ready_in(settings, "casestore") == 0  # resumed by itself


@pytest.fixture
async def work_queue(settings: Settings) -> AsyncIterator[tuple[aio_pika.abc.AbstractConnection,
                                                               str]]:
    """A quorum queue dead-lettering a message at its first counted return."""
    name = names(settings).queue(f"outage-{uuid.uuid4().hex[:6]}")
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments={
            "x-queue-type": "quorum", "x-delivery-limit": 0,
            "x-dead-letter-exchange": names(settings).dead_letter})
        try:
            yield connection, name
        finally:
            await channel.queue_delete(name)


async def consume(connection: aio_pika.abc.AbstractConnection, name: str, handler: object,
                  gate: OutageGate) -> Consumer:
    consuming = await connection.channel()
    await consuming.set_qos(prefetch_count=10)
    consumer = Consumer(await consuming.get_queue(name), handler, gate)  # type: ignore[arg-type]
    await consumer.start()
    return consumer


async def publish(connection: aio_pika.abc.AbstractConnection, name: str,
                  event: Envelope) -> None:
    channel = await connection.channel()
    await channel.default_exchange.publish(
        aio_pika.Message(event.to_bytes(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                         message_id=str(event.id)), routing_key=name)


async def test_a_message_held_past_the_hold_limit_goes_back_uncounted_and_succeeds_later(
        work_queue: tuple[aio_pika.abc.AbstractConnection, str], settings: Settings) -> None:
    connection, name = work_queue
    event = new_event(CASE_CREATED, {"marker": uuid.uuid4().hex})
    up = False
    calls: list[bool] = []

    async def handler(envelope: Envelope) -> None:
        calls.append(up)
        if not up:
            raise OSError("database unreachable")

    async def probe() -> bool:
        return up

    gate = OutageGate(probe, retry_seconds=0.1, hold_seconds=0.3)
    consumer = await consume(connection, name, handler, gate)
    try:
        await publish(connection, name, event)
        await asyncio.sleep(1.5)
        # Handed back as a fresh copy, which waits: the paused consumer takes nothing new.
        assert calls == [False]
        assert await ready(connection, name) == 1
        up = True
        for _ in range(100):
            if calls[-1]:
                break
            await asyncio.sleep(0.05)
        assert calls == [False, True]
    finally:
        await consumer.stop(1.0)
    # At a delivery limit of 0, one counted return would have dead-lettered it.
    assert await dead_letters_mentioning(settings, event.data["marker"].encode()) == 0
    assert await ready(connection, name) == 0


async def ready(connection: aio_pika.abc.AbstractConnection, name: str) -> int:
    declared = await (await connection.channel()).declare_queue(name, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def test_an_outage_error_while_the_dependencies_are_up_is_the_messages_own_failure(
        work_queue: tuple[aio_pika.abc.AbstractConnection, str], settings: Settings) -> None:
    """Poison that looks like an outage still meets the delivery limit."""
    connection, name = work_queue
    event = new_event(CASE_CREATED, {"marker": uuid.uuid4().hex})

    async def handler(envelope: Envelope) -> None:
        raise TimeoutError("this message's query always times out")

    async def probe() -> bool:
        return True

    consumer = await consume(connection, name, handler, OutageGate(
        probe, retry_seconds=0.1, hold_seconds=60))
    try:
        await publish(connection, name, event)
        await until(lambda: dead_letters_mentioning(settings, event.data["marker"].encode()), 20)
        assert await dead_letters_mentioning(settings, event.data["marker"].encode()) == 1
    finally:
        await consumer.stop(1.0)
