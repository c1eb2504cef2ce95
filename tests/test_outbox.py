"""The outbox relay: nothing committed is lost, nothing is sent twice by a clean stop, and one
row the broker refuses holds up nothing."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from shared.events import Envelope
from shared.settings import Settings
from tests.faults import CuttableProxy, replaced
from tests.helpers import EventTap, sample_form, tap_events, until
from tests.stack import Stack

TEST_KEY = "test.outbox"


@pytest.fixture
async def tap(settings: Settings, stack: Stack) -> AsyncIterator[EventTap]:
    """Only the events of the test routing key."""
    async with tap_events(settings, TEST_KEY) as events:
        yield events


async def insert_outbox(settings: Settings, correlation_ids: list[str],
                       routing_key: str = TEST_KEY) -> list[str]:
    """Rows as casestore writes them, in one transaction; returns their event ids.

    The envelopes are built by hand: `new_event` would replace an unusable correlation id, and
    the relay must cope with rows that older code (or a bug) wrote all the same.
    """
    events = [Envelope(type=routing_key, data={"n": n}, correlation_id=cid)
              for n, cid in enumerate(correlation_ids)]
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.executemany(
            "INSERT INTO outbox (event_id, routing_key, envelope) VALUES ($1, $2, $3::jsonb)",
            [(e.id, e.type, e.to_bytes().decode()) for e in events])
    finally:
        await conn.close()
    return [str(e.id) for e in events]


async def drain(tap: EventTap, quiet: float = 1.5) -> list[str]:
    """Event ids arriving until none came for `quiet` seconds."""
    seen: list[str] = []
    while True:
        try:
            event = await tap.next(lambda _: True, within=quiet)
        except AssertionError:
            return seen
        seen.append(event["id"])


async def fetch(settings: Settings, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_a_row_the_broker_refuses_is_parked_and_the_rest_of_its_batch_sent_once(
        settings: Settings, tap: EventTap) -> None:
    ids = await insert_outbox(settings, ["ok-1", "x" * 300, "ok-2"])
    seen = await drain(tap)
    assert sorted(seen) == sorted([ids[0], ids[2]])  # each once, no repeats on later rounds
    parked = await fetch(settings, "SELECT event_id, error FROM outbox_parked")
    assert [str(r["event_id"]) for r in parked if str(r["event_id"]) in ids] == [ids[1]]
    assert "255" in next(r["error"] for r in parked if str(r["event_id"]) == ids[1])
    left = await fetch(settings, "SELECT event_id FROM outbox")
    assert not {str(r["event_id"]) for r in left} & set(ids)


async def test_an_event_nobody_is_bound_to_does_not_hold_up_the_outbox(
        settings: Settings, tap: EventTap) -> None:
    """No queue is bound to the first row's routing key, so the broker returns it: it is
    dropped (not parked), and the row behind it goes out."""
    unbound, = await insert_outbox(settings, ["unbound"], routing_key="test.unbound")
    behind, = await insert_outbox(settings, ["behind it"])
    assert (await tap.next(lambda _: True))["id"] == behind

    async def outbox_empty() -> bool:
        left = await fetch(settings, "SELECT event_id FROM outbox")
        return not {str(r["event_id"]) for r in left} & {unbound, behind}

    await until(outbox_empty)
    parked = await fetch(settings, "SELECT event_id FROM outbox_parked")
    assert unbound not in {str(r["event_id"]) for r in parked}


async def test_a_clean_stop_of_casestore_mid_relay_sends_no_event_twice(
        settings: Settings, stack: Stack, tap: EventTap) -> None:
    await stack.stop("casestore")
    try:
        ids = await insert_outbox(settings, [f"burst-{n}" for n in range(3000)])
        await stack.start("casestore")
        first = await tap.next(lambda _: True)  # relaying has begun
        await stack.stop("casestore")  # SIGTERM of a rolling deploy
    finally:
        await stack.start("casestore")
    seen = [first["id"], *await drain(tap)]
    assert len(seen) == len(set(seen))
    assert set(seen) == set(ids)


@pytest.fixture
async def casestore_via_broker_proxy(settings: Settings, stack: Stack) -> AsyncIterator[
        tuple[Stack, CuttableProxy]]:
    """The only casestore, reaching RabbitMQ through a proxy the test can cut."""
    proxy = CuttableProxy(urlsplit(settings.amqp_url).port or 5672)
    await proxy.start()
    try:
        async with replaced(stack, "casestore",
                            amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/") as proxied:
            yield proxied, proxy
    finally:
        await proxy.start()


async def test_events_waiting_while_the_broker_is_gone_go_out_once_it_is_back(
        casestore_via_broker_proxy: tuple[Stack, CuttableProxy], settings: Settings,
        events: EventTap) -> None:
    proxied, proxy = casestore_via_broker_proxy
    form_id = f"f-{uuid.uuid4().hex[:12]}"
    async with aiohttp.ClientSession(
            base_url=proxied.url("casestore"),
            headers={"Authorization": f"Bearer {settings.admin_token}"}) as api:
        async with api.post("/api/forms", json=sample_form(form_id)) as resp:
            assert resp.status == 201
        await proxy.cut()
        async with api.post(f"/api/forms/{form_id}/cases",
                            json={"data": {"text-field": "while cut"}}) as resp:
            assert resp.status == 201
            case_id = (await resp.json())["id"]
        await asyncio.sleep(1.5)  # several relay rounds fail meanwhile
        waiting = await fetch(settings, "SELECT envelope->>'case_id' AS case_id FROM outbox")
        assert case_id in {r["case_id"] for r in waiting}
        await proxy.start()
        created = await events.next(
            lambda e: e["type"] == "case.created" and e["case_id"] == case_id, within=30)
    assert created["data"]["data"] == {"text-field": "while cut"}
