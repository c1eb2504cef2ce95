"""Several broker nodes (CASEWIRE_AMQP_URLS): a service connects to the first that answers and,
when its node goes, moves to the next, publishing and consuming there (shared/failover.py); and
what a consumer does while the broker refuses what it publishes (a node lost, a queue electing
its leader): it waits, spending none of the message's deliveries (shared/outages.py).

Each "node" here is a proxy the test can cut in front of the one real RabbitMQ, so a cut is a
node lost to the client; `make topology` does the same against a real three-node cluster.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import pytest
from structlog.testing import capture_logs

from shared import broker
from shared.errors import BrokerUnavailable
from shared.events import DELIVERY_REQUESTED
from shared.failover import FailoverConnection
from shared.settings import Settings
from tests.faults import CuttableProxy, replaced
from tests.helpers import (
    AutomationFactory,
    FormFactory,
    dead_letters_mentioning,
    names,
    until,
    wait_for_cases,
)
from tests.receiver import Receiver
from tests.stack import Stack, free_port


def node_url(port: int) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/"


@pytest.fixture
async def nodes(settings: Settings) -> AsyncIterator[list[CuttableProxy]]:
    proxies = [CuttableProxy(urlsplit(settings.amqp_url).port or 5672) for _ in range(2)]
    for proxy in proxies:
        await proxy.start()
    try:
        yield proxies
    finally:
        for proxy in proxies:
            await proxy.cut()


async def test_a_service_starts_on_the_next_node_when_the_first_is_down(
        settings: Settings) -> None:
    both = f"{node_url(free_port())}, {settings.amqp_url}"
    connection = await broker.connect(settings.model_copy(update={"amqp_urls": both}))
    try:
        assert connection.connected.is_set()
        assert isinstance(connection, FailoverConnection)
        assert connection.url.port == urlsplit(settings.amqp_url).port
    finally:
        await connection.close()


async def test_no_node_answering_is_one_sentence_naming_every_node(settings: Settings) -> None:
    ports = [free_port(), free_port()]
    dead = settings.model_copy(update={"amqp_urls": ",".join(map(node_url, ports)),
                                       "connect_timeout": 1.0})
    with pytest.raises(Exception, match="Cannot reach RabbitMQ") as raised:
        await broker.connect(dead)
    assert all(str(port) in str(raised.value) for port in ports)


async def test_ingest_and_casestore_move_to_the_next_node_and_lose_no_case(
        stack: Stack, settings: Settings, nodes: list[CuttableProxy],
        make_form: FormFactory) -> None:
    urls = ",".join(node_url(proxy.port) for proxy in nodes)
    hook = await make_form()
    path = "/" + hook["url"].split("/", 3)[3]
    admin = {"Authorization": f"Bearer {settings.admin_token}"}
    async with replaced(stack, "casestore", amqp_urls=urls) as casestore, \
            replaced(stack, "ingest", amqp_urls=urls) as ingest, \
            aiohttp.ClientSession(base_url=ingest.url("ingest")) as http, \
            aiohttp.ClientSession(base_url=casestore.url("casestore"), headers=admin) as api:
        assert await post(http, path, "before")
        accepted = ["before"]
        await nodes[0].cut()  # the node both services are on

        async def accepted_again() -> bool:
            key = f"after-{uuid.uuid4().hex[:6]}"
            if await post(http, path, key):
                accepted.append(key)
                return True
            return False

        await until(accepted_again, within=30, failure="ingest never moved to the next node")
        cases = await wait_for_cases(api, hook["form_id"], 2, within=30)
    assert sorted(c["data"]["text-field"] for c in cases) == sorted(accepted)


async def post(http: aiohttp.ClientSession, path: str, text: str) -> bool:
    """Whether ingest accepted the case (200; 503 while it reconnects)."""
    try:
        async with http.post(path, json={"text-field": text}) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


@contextlib.asynccontextmanager
async def broker_refusing(settings: Settings, routing_key: str) -> AsyncIterator[None]:
    """The broker nacks every message published with `routing_key`, as it does while a quorum
    queue has no leader: a queue that takes nothing (length 0, reject-publish) is bound to it,
    and a message routed to a queue that rejects it is nacked."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(names(settings).events)
        refusing = await channel.declare_queue(
            f"{settings.name_prefix}.refusing-{uuid.uuid4().hex[:6]}", exclusive=True,
            arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
        await refusing.bind(exchange, routing_key=routing_key)
        try:
            yield
        finally:
            await refusing.delete()


async def test_a_case_event_whose_delivery_request_the_broker_refuses_waits_for_it(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        receiver: Receiver, http: aiohttp.ClientSession) -> None:
    """The database is up, so this is no outage to the dispatcher's probe; requeueing each
    refused request spent the case event's deliveries and dead-lettered it within seconds."""
    hook = await make_form()
    url = receiver.endpoint()
    await make_automation(hook["form_id"], url)
    marker = f"refused-{uuid.uuid4().hex[:8]}"
    async with broker_refusing(settings, DELIVERY_REQUESTED):
        async with http.post(hook["url"], json={"text-field": marker}) as resp:
            assert resp.status == 200
        await asyncio.sleep(12)  # more than five requeues (the delivery limit) took
    [sent] = await receiver.wait_for(url, 1, within=40)
    assert sent.json()["text"] == marker
    assert await dead_letters_mentioning(settings, marker.encode()) == 0


async def test_a_publisher_takes_a_fresh_channel_after_a_nack(settings: Settings) -> None:
    """RabbitMQ 3.10 goes on nacking a channel whose first publish came while a quorum queue
    elected its leader; a fresh channel is served (make topology: rabbitmq-node-kill)."""
    key = f"topology.test.{uuid.uuid4().hex[:6]}"
    connection = await broker.connect(settings)
    publisher = await broker.Publisher.open(connection, settings)
    try:
        with capture_logs() as logs:
            async with broker_refusing(settings, key):
                with pytest.raises(BrokerUnavailable, match="not accepted"):
                    await publisher.publish_json(b"{}", key, "m-1", "c-1")

            async def renewed() -> bool:
                return any(e["event"] == "publisher_channel_renewed_after_nack" for e in logs)

            await until(renewed, within=10)
        taking = await (await connection.channel()).declare_queue(exclusive=True)
        await taking.bind(names(settings).events, routing_key=key)
        await publisher.publish_json(b"{}", key, "m-2", "c-2")
        assert (await taking.get(timeout=5)).message_id == "m-2"
    finally:
        await publisher.close()
        await connection.close()
