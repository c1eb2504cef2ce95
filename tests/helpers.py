"""Helpers the tests share (fixtures are in conftest.py): waiting, the run's broker, and the
admin API, incoming webhooks and CLI as an external system or an operator uses them."""

import asyncio
import contextlib
import copy
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import aiohttp
import asyncpg
import orjson

from shared import broker_topology
from shared.events import Envelope
from shared.settings import Settings
from tests.faults import ProxiedIngest

T = TypeVar("T")


async def until(probe: Callable[[], Awaitable[T | None]], within: float = 10.0,
                failure: str = "condition never held") -> T:
    """Poll until `probe` returns something truthy, and return it; fail if it never does."""
    for _ in range(int(within * 20)):
        result = await probe()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(failure)


# The run's broker, as a service would use it.

def names(settings: Settings) -> broker_topology.Names:
    """The run's exchange and queue names."""
    return broker_topology.Names(settings.name_prefix)


async def publish_raw(settings: Settings, routing_key: str, bodies: list[bytes]) -> None:
    """Publish messages onto the run's events exchange as a service would, bypassing it."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(names(settings).events)
        for body in bodies:
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=routing_key)


async def publish_event(settings: Settings, event: Envelope, times: int = 1) -> None:
    """Straight onto the events exchange, as the dispatcher (or a redelivery) would."""
    await publish_raw(settings, event.type, [event.to_bytes()] * times)


async def processed(settings: Settings, event_id: uuid.UUID, within: float = 10.0) -> None:
    """Wait until casestore has applied (or deliberately skipped) the event."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        await until(lambda: conn.fetchval(
            "SELECT 1 FROM processed_events WHERE consumer = 'casestore' AND event_id = $1",
            event_id), within, f"event {event_id} was never processed")
    finally:
        await conn.close()


async def delete_broker_objects(settings: Settings) -> None:
    await broker_topology.delete_topology(settings.amqp_url, settings.name_prefix)


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
        exchange = await broker_topology.declare_exchanges(channel, names(settings))
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=routing_key)
        yield EventTap(queue)


async def wait_dead_lettered(settings: Settings, marker: bytes,
                             within: float = 10.0) -> dict[str, Any]:
    """Take the dead-lettered message whose body holds `marker`, and return its headers; fail
    if none arrives in time.

    Every other one is held until the queue is read through, then handed back: a quorum queue
    delivers a returned message first, so handing each back at once would show it again and
    again, and never what lies behind it."""
    found: dict[str, Any] = {}
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.get_queue(names(settings).dead_letters)

        async def taken() -> bool:
            others = []
            while (message := await dead.get(fail=False)) is not None:
                if not found and marker in message.body:
                    await message.ack()
                    found.update(message.headers or {}, taken=True)
                else:
                    others.append(message)
            for message in others:
                await message.nack(requeue=True)
            return bool(found)

        await until(taken, within, "the message never reached the dead-letter queue")
    return found


async def dead_letters_mentioning(settings: Settings, marker: bytes) -> int:
    """How many dead-lettered messages hold `marker`; every message stays in the queue."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.get_queue(names(settings).dead_letters)
        taken = []
        while (message := await dead.get(fail=False)) is not None:
            taken.append(message)
        for message in taken:
            await message.nack(requeue=True)
    return sum(marker in m.body for m in taken)


# Forms and cases through the admin API.

FormFactory = Callable[..., Awaitable[dict[str, Any]]]


async def new_account(api: aiohttp.ClientSession, role: str, password: str) -> str:
    """A fresh account of `role` that signs in to the console with `password`."""
    username = unique(role)
    await call(api, "POST", "/api/accounts", 201,
               {"username": username, "role": role, "password": password})
    return username


def unique(prefix: str) -> str:
    """A name no other test (or run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


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


def full_form(**overrides: Any) -> dict[str, Any]:
    """The sample form with a unique id and every field default spelled out (so echoes match)."""
    body = sample_form(f"a-{uuid.uuid4().hex[:12]}")
    body["fields"] = [{"mandatory": False, "section": 0, "options": None, **f}
                      for f in body["fields"]]
    return {**body, "time_zone": "UTC", **overrides}


async def call(api: aiohttp.ClientSession, method: str, path: str, status: int,
               body: Any = None, **kwargs: Any) -> Any:
    """One request; asserts the status and returns the parsed JSON body."""
    async with api.request(method, path, json=body, **kwargs) as resp:
        text = await resp.text()
        assert resp.status == status, text
        return orjson.loads(text) if text else None


async def new_form(api: aiohttp.ClientSession, **overrides: Any) -> str:
    body = full_form(**overrides)
    await call(api, "POST", "/api/forms", 201, body)
    return str(body["id"])


async def new_case(api: aiohttp.ClientSession, form_id: str, data: dict[str, Any] | None = None,
                   **fields: Any) -> Any:
    """A case from the admin API: `data` as given, else a text-field of "hello" and `fields`."""
    body = {"data": {"text-field": "hello", **fields} if data is None else data}
    return await call(api, "POST", f"/api/forms/{form_id}/cases", 201, body)


async def get_case(api: aiohttp.ClientSession, case_id: str) -> dict[str, Any]:
    found: dict[str, Any] = await call(api, "GET", f"/api/cases/{case_id}", 200)
    return found


async def patch_case(api: aiohttp.ClientSession, case_id: str, **body: Any) -> None:
    await call(api, "PATCH", f"/api/cases/{case_id}", 200, body)


async def case_when(api: aiohttp.ClientSession, case_id: str,
                    predicate: Callable[[dict[str, Any]], bool],
                    within: float = 10.0) -> dict[str, Any]:
    """The case once `predicate` holds for it."""

    async def holds() -> dict[str, Any] | None:
        found = await get_case(api, case_id)
        return found if predicate(found) else None

    return await until(holds, within, f"case {case_id} never got there")


async def wait_for_cases(api: aiohttp.ClientSession, form_id: str, count: int,
                         within: float = 20.0) -> list[dict[str, Any]]:
    """Poll the admin API until the form has `count` cases; fail if others appear or time is up."""

    deadline = asyncio.get_running_loop().time() + within
    while True:
        body = await call(api, "GET", f"/api/forms/{form_id}/cases", 200, params={"limit": "500"})
        if body["total"] >= count or asyncio.get_running_loop().time() > deadline:
            assert body["total"] == len(body["cases"]) == count, \
                f"expected {count} cases, found {body['total']}"
            cases: list[dict[str, Any]] = body["cases"]
            return cases
        await asyncio.sleep(0.1)


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def upload(api: aiohttp.ClientSession, case_id: str, content: bytes = PNG, *,
                 name: str = "photo.png", field: str = "attachment",
                 content_type: str | None = "image/png", status: int = 201) -> Any:
    headers = {"Content-Type": content_type} if content_type else {}
    return await call(api, "POST", f"/api/cases/{case_id}/files/{field}", status, data=content,
                      params={"name": name}, headers=headers)


async def case_with_form(api: aiohttp.ClientSession) -> dict[str, Any]:
    case: dict[str, Any] = await new_case(api, await new_form(api))
    return case


# Automations.

AutomationFactory = Callable[..., Awaitable[dict[str, Any]]]
# Never fires (nothing closes a case in the tests using it), so nothing is ever sent.
QUIET_WHEN = [{"event": "status_changed", "to": ["closed"]}]
NOWHERE = "http://127.0.0.1:9/never"


def webhook_action(url: str, **settings: Any) -> dict[str, Any]:
    return {"type": "outgoing_webhook",
            "content": [{"key": "caseNumber", "meta": "case_number"},
                        {"key": "text", "field": "text-field"}],
            "settings": {"method": "POST", "url": url, **settings}}


RESPONSE_FORM_FIELDS = [
    {"id": "text-field", "label": "Text", "type": "text", "mandatory": True},
    {"id": "amount", "label": "Amount", "type": "number"},
    {"id": "external-id", "label": "External id", "type": "text", "section": 1},
    {"id": "crm-status", "label": "CRM status", "type": "text", "section": 1},
]


def with_response(url: str, **settings: Any) -> dict[str, Any]:
    """A webhook action writing the answer's `id` and `result.status` into the case
    (a form with RESPONSE_FORM_FIELDS has the fields)."""
    action = webhook_action(url, **settings)
    action["response"] = [{"field": "external-id", "key": "id"},
                          {"field": "crm-status", "key": "result.status"}]
    return action


def definition(**overrides: Any) -> dict[str, Any]:
    """A valid automation with every default spelled out, so the API's echo can be compared."""
    body: dict[str, Any] = {
        "name": f"auto-{uuid.uuid4().hex[:6]}",
        "when": QUIET_WHEN,
        "if": {"all": [{"field": "priority", "op": "eq", "value": "high"},
                       {"any": [{"field": "status", "op": "ne", "value": "closed"},
                                {"field": "tags", "op": "in", "value": [["a"]]}]}]},
        "once": False,
        "action": {
            "type": "outgoing_webhook",
            "content": [
                {"key": "number", "meta": "case_number"},
                {"key": "text", "field": "text-field"},
                {"key": "title", "template": "Case #{case_number}: {field:text-field}"},
                {"key": "source", "value": "casewire"},
            ],
            "settings": {"method": "POST", "url": NOWHERE, "auth": {"type": "none"},
                         "attempts": 3, "timeout": 30, "protocol": "json",
                         "retry": "standard", "max_per_second": None,
                         "max_in_flight": None, "headers": {}},
            "response": [{"field": "email", "key": "contact.email"}],
        },
    }
    return {**body, **overrides}


def with_settings(body: dict[str, Any], **settings: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    changed["action"]["settings"].update(settings)
    return changed


def basic(password: str) -> dict[str, str]:
    return {"type": "basic", "username": "crm", "password": password}


async def create_automation(api: aiohttp.ClientSession, form_id: str,
                            body: dict[str, Any] | None = None) -> dict[str, Any]:
    created: dict[str, Any] = await call(api, "POST", f"/api/forms/{form_id}/automations", 201,
                                         body or definition())
    return created


# Incoming webhooks with user authentication, and ingest's readiness.

CREDS = {"password": "correct horse battery"}


async def make_user(api: aiohttp.ClientSession, forms: list[str]) -> dict[str, str]:
    creds = {"username": f"user-{uuid.uuid4().hex[:8]}", **CREDS}
    async with api.post("/api/users", json={**creds, "forms": forms}) as resp:
        assert resp.status == 201
    return creds


async def issue_key(http: aiohttp.ClientSession, url: str, creds: dict[str, str]) -> str:
    """The seed's curl: POST {"username", "password"} to the webhook URL."""
    async with http.post(url, json=creds, headers={"Content-type": "application/json"}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert set(body) == {"auth_key"}
    key: str = body["auth_key"]
    return key


async def post_with_key(http: aiohttp.ClientSession, url: str,
                        key: str | None) -> tuple[int, Any]:
    """Create a case through the webhook with this Auth-key (none: without the header)."""
    headers = {"Auth-key": key} if key else {}
    async with http.post(url, json={"text-field": "x"}, headers=headers) as resp:
        return resp.status, await resp.json()


async def status_of(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as resp:
        return resp.status


async def wait_ready(http: aiohttp.ClientSession, ingest: ProxiedIngest, status: int,
                     within: float = 30.0) -> None:
    """Until the ingest's /readyz answers `status`."""

    async def answers() -> bool:
        return await status_of(http, ingest.url("/readyz")) == status

    await until(answers, within, f"/readyz never answered {status}")


# The CLI, run as an operator would.

CASEWIRE = [sys.executable, "-c", "from services.cli import main; main()"]


def cli_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEWIRE_")}
    return {**env, **{f"CASEWIRE_{k.upper()}": v for k, v in values.items()}}


# Examples of the README and docs/ pages, run as their readers would.

ROOT = Path(__file__).parent.parent


def doc_snippet(page: str, name: str) -> dict[str, Any]:
    """What the page's Python block between `<!-- name -->` and its end defines."""
    text = (ROOT / page).read_text()
    match = re.search(rf"<!-- {name} -->\n```python\n(.*?)```", text, re.S)
    assert match, f"{page} has no snippet {name}"
    scope: dict[str, Any] = {}
    exec(match.group(1), scope)  # noqa: S102 (our own documentation's example)
    return scope
