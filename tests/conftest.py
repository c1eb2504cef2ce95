"""Fixtures: one isolated Casewire stack per test session, and helpers that clean up after it."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import aiohttp
import orjson
import pytest

from services.casestore.migrate import drop_database, migrate
from shared import broker
from shared.logging import configure_logging
from shared.settings import Settings
from tests.receiver import Receiver
from tests.scheduling import PlayedDispatcher, playing
from tests.stack import Stack, isolated_settings

RUN_ID = uuid.uuid4().hex[:10]
FormFactory = Callable[..., Awaitable[dict[str, Any]]]


async def delete_broker_objects(settings: Settings) -> None:
    await broker.delete_topology(settings.amqp_url, settings.name_prefix)


@pytest.fixture(scope="session")
def settings() -> Settings:
    configure_logging("tests", "WARNING", json=False)
    return isolated_settings(RUN_ID)


@pytest.fixture(scope="session")
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    await migrate(settings.database_url)
    running = Stack(settings)
    await running.start_all()
    try:
        yield running
    finally:
        await running.stop_all()
        await delete_broker_objects(settings)
        await drop_database(settings.database_url)


@pytest.fixture(scope="session")
async def api(stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    """The admin API with the bearer token set."""
    headers = {"Authorization": f"Bearer {stack.settings.admin_token}"}
    async with aiohttp.ClientSession(base_url=stack.url("casestore"), headers=headers) as session:
        yield session


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client, as an external system would use."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=300), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        yield session


def sample_form(form_id: str) -> dict[str, Any]:
    return {
        "id": form_id,
        "name": f"Form {form_id}",
        "sections": [{"name": "Request"}, {"name": "Handling"}],
        "fields": [
            {"id": "text-field", "label": "Text", "type": "text", "mandatory": True},
            {"id": "email", "label": "E-mail", "type": "email"},
            {"id": "amount", "label": "Amount", "type": "number"},
            {"id": "due-date", "label": "Due", "type": "date"},
            {"id": "seen-at", "label": "Seen at", "type": "datetime"},
            {"id": "priority", "label": "Priority", "type": "select",
             "options": ["low", "high"]},
            {"id": "tags", "label": "Tags", "type": "multiselect", "options": ["a", "b", "c"]},
            {"id": "urgent", "label": "Urgent", "type": "checkbox"},
            {"id": "attachment", "label": "Attachment", "type": "file"},
            {"id": "notes", "label": "Notes", "type": "textarea", "section": 1},
        ],
        "statuses": ["registered", "in_progress", "closed"],
    }


@pytest.fixture
async def make_form(api: aiohttp.ClientSession) -> FormFactory:
    """Create a fresh form (unique id) with its incoming webhook; returns the webhook JSON."""

    async def factory(authenticate_user: bool = False, **overrides: Any) -> dict[str, Any]:
        form_id = f"f-{uuid.uuid4().hex[:12]}"
        body = {**sample_form(form_id), **overrides, "id": form_id}
        async with api.post("/api/forms", json=body) as resp:
            assert resp.status == 201, await resp.text()
        async with api.put(f"/api/forms/{form_id}/incoming-webhook",
                           json={"enabled": True, "authenticate_user": authenticate_user}) as resp:
            assert resp.status == 200, await resp.text()
            hook: dict[str, Any] = await resp.json()
        return {**hook, "form_id": form_id}

    return factory


async def wait_for_cases(api: aiohttp.ClientSession, form_id: str, count: int,
                         within: float = 20.0) -> list[dict[str, Any]]:
    """Poll the admin API until the form has `count` cases; fail if others appear or time is up."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        async with api.get(f"/api/forms/{form_id}/cases", params={"limit": "500"}) as resp:
            body = await resp.json()
        if body["total"] >= count or asyncio.get_running_loop().time() > deadline:
            assert body["total"] == len(body["cases"]) == count, \
                f"expected {count} cases, found {body['total']}"
            cases: list[dict[str, Any]] = body["cases"]
            return cases
        await asyncio.sleep(0.1)


async def wait_dead_lettered(settings: Settings, marker: bytes, within: float = 10.0) -> None:
    """Take the dead-lettered message whose body holds `marker`; fail if none arrives in time.

    Every other one is held until the queue is read through, then handed back: a quorum queue
    delivers a returned message first, so handing each back at once would show it again and
    again, and never what lies behind it."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.get_queue(f"{settings.name_prefix}.dead-letters")
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            found, others = False, []
            while (message := await dead.get(fail=False)) is not None:
                if not found and marker in message.body:
                    await message.ack()
                    found = True
                else:
                    others.append(message)
            for message in others:
                await message.nack(requeue=True)
            if found:
                return
            await asyncio.sleep(0.1)
    raise AssertionError("the message never reached the dead-letter queue")


class EventTap:
    """A private queue on the run's events exchange, to see what the services publish."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue):
        self.queue = queue

    async def next(self, predicate: Callable[[dict[str, Any]], bool],
                   within: float = 10.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            message = await self.queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            event: dict[str, Any] = orjson.loads(message.body)
            if predicate(event):
                return event
        raise AssertionError("no matching event arrived")


@contextlib.asynccontextmanager
async def tap_events(settings: Settings, routing_key: str = "#") -> AsyncIterator[EventTap]:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await broker.declare_exchanges(channel, broker.Names(settings.name_prefix))
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=routing_key)
        yield EventTap(queue)


@pytest.fixture
async def events(settings: Settings, stack: Stack) -> AsyncIterator[EventTap]:
    async with tap_events(settings) as tap:
        yield tap


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    """The external system outgoing webhooks call; each test takes fresh URLs from it."""
    async with Receiver.running() as running:
        yield running


AutomationFactory = Callable[..., Awaitable[dict[str, Any]]]


def webhook_action(url: str, **settings: Any) -> dict[str, Any]:
    return {"type": "outgoing_webhook",
            "content": [{"key": "caseNumber", "meta": "case_number"},
                        {"key": "text", "field": "text-field"}],
            "settings": {"method": "POST", "url": url, **settings}}


@pytest.fixture
async def make_automation(api: aiohttp.ClientSession) -> AutomationFactory:
    """Create an automation on a form; fields default to 'on case_created, send to `url`'."""

    async def factory(form_id: str, url: str, **overrides: Any) -> dict[str, Any]:
        body = {"name": f"auto-{uuid.uuid4().hex[:6]}", "when": [{"event": "case_created"}],
                "action": webhook_action(url), **overrides}
        async with api.post(f"/api/forms/{form_id}/automations", json=body) as resp:
            assert resp.status == 201, await resp.text()
            created: dict[str, Any] = await resp.json()
        return created

    return factory


@pytest.fixture
async def played(settings: Settings, stack: Stack) -> AsyncIterator[PlayedDispatcher]:
    """The test plays the dispatcher (tests/scheduling.py)."""
    async with contextlib.asynccontextmanager(playing)(settings, stack) as dispatcher:
        yield dispatcher
