"""The outbox: a command's events go out as its transaction commits, the relay takes whatever
that left behind; nothing committed is lost, nothing is sent twice by a clean stop, and one row
the broker refuses holds up nothing."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from services.casestore.outbox import PublishAtCommit
from services.casestore.repo import outbox as outbox_rows
from shared import broker, db
from shared.events import Envelope
from shared.settings import Settings
from tests.faults import CuttableProxy, replaced
from tests.helpers import EventTap, FormFactory, sample_form, tap_events, until
from tests.stack import Stack
from tests.test_pipeline_metrics import scrape, value

TEST_KEY = "test.outbox"


@pytest.fixture
async def tap(settings: Settings, stack: Stack) -> AsyncIterator[EventTap]:
    """Only the events of the test routing key."""
    async with tap_events(settings, TEST_KEY) as events:
        yield events


async def insert_outbox(settings: Settings, correlation_ids: list[str],
                       routing_key: str = TEST_KEY, relay_after_seconds: float = 0.0
                       ) -> list[str]:
    """Rows as casestore writes them, in one transaction; returns their event ids.

    The envelopes are built by hand: `new_event` would replace an unusable correlation id, and
    the relay must cope with rows that older code (or a bug) wrote all the same.
    """
    events = [Envelope(type=routing_key, data={"n": n}, correlation_id=cid)
              for n, cid in enumerate(correlation_ids)]
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.executemany(
            "INSERT INTO outbox (event_id, routing_key, envelope, relay_after)"
            " VALUES ($1, $2, $3::jsonb, now() + make_interval(secs => $4))",
            [(e.id, e.type, e.to_bytes().decode(), relay_after_seconds) for e in events])
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


@contextlib.asynccontextmanager
async def publishing_at_commit(settings: Settings, broker_settings: Settings
                               ) -> AsyncIterator[tuple[asyncpg.Pool, PublishAtCommit]]:
    """A publisher at commit of our own (on `broker_settings`' broker), stopped cleanly after
    the block: it publishes and settles every row in hand first."""
    connection = await broker.connect(broker_settings)
    pool = await db.create_pool(settings)
    try:
        at_commit = PublishAtCommit(
            pool, await broker.Publisher.open(connection, broker_settings), settings)
        running = asyncio.create_task(at_commit.run())
        try:
            yield pool, at_commit
        finally:
            at_commit.stop()
            await running
    finally:
        await pool.close()
        await connection.close()


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


async def test_a_webhooks_case_event_goes_out_as_its_transaction_commits(
        settings: Settings, stack: Stack, make_form: FormFactory, http: aiohttp.ClientSession,
        events: EventTap) -> None:
    """casestore publishes the events of a command's transaction itself once it commits, and
    deletes their rows: the relay has nothing to do."""
    hook = await make_form()
    casestore = stack.url("casestore")
    before = value(await scrape(casestore), "casewire_outbox_published_at_commit_total")
    async with http.post(hook["url"], json={"text-field": "at commit"}) as resp:
        assert resp.status == 200
    created = await events.next(lambda e: e["type"] == "case.created"
                                and e["form_id"] == hook["form_id"])
    after = value(await scrape(casestore), "casewire_outbox_published_at_commit_total")
    assert after >= before + 1

    async def row_gone() -> bool:
        left = await fetch(settings, "SELECT event_id FROM outbox")
        return created["id"] not in {str(r["event_id"]) for r in left}

    await until(row_gone)


async def test_a_row_left_by_a_publish_at_commit_is_the_relays_after_its_grace(
        settings: Settings, tap: EventTap) -> None:
    """A casestore that committed and died before it published: its row waits out the grace
    (the publish at commit might still be under way), then the relay sends it."""
    left, = await insert_outbox(settings, ["left behind"], relay_after_seconds=2.5)
    assert await drain(tap, quiet=1.5) == []
    assert (await tap.next(lambda _: True, within=10))["id"] == left


async def test_an_event_the_broker_did_not_take_at_commit_is_the_relays_at_once(
        settings: Settings, tap: EventTap) -> None:
    """Published at commit into a broker connection that is gone: the row goes to the relay
    (the stack's casestore, on the broker) at once, long before its 15 s grace is over."""
    proxy = CuttableProxy(urlsplit(settings.amqp_url).port or 5672)
    await proxy.start()
    cut_off = settings.model_copy(update={
        "amqp_url": f"amqp://guest:guest@127.0.0.1:{proxy.port}/"})
    try:
        async with publishing_at_commit(settings, cut_off) as (pool, at_commit):
            await proxy.cut()
            event = Envelope(type=TEST_KEY, data={"n": 1}, correlation_id="at-commit")
            async with pool.acquire() as conn, at_commit.transaction(conn):
                await outbox_rows.insert_outbox(conn, [event])
            assert (await tap.next(lambda _: True, within=10))["id"] == str(event.id)
    finally:
        await proxy.cut()


async def test_rows_published_at_commit_are_all_deleted_by_a_clean_stop(
        settings: Settings, tap: EventTap) -> None:
    """Published rows are deleted in batches, the last ones as the publisher stops: none is
    left for the relay to send again after a restart."""
    events = [Envelope(type=TEST_KEY, data={"n": n}, correlation_id="at-commit")
              for n in range(3)]
    async with publishing_at_commit(settings, settings) as (pool, at_commit):
        for event in events:
            async with pool.acquire() as conn, at_commit.transaction(conn):
                await outbox_rows.insert_outbox(conn, [event])
        assert {(await tap.next(lambda _: True))["id"] for _ in events} == \
            {str(e.id) for e in events}
    left = await fetch(settings, "SELECT event_id FROM outbox")
    assert {r["event_id"] for r in left}.isdisjoint({e.id for e in events})
