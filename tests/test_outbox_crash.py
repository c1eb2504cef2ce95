"""The outbox's promise, kept through a crash: a row is deleted only once the broker confirmed
its event. A real casestore process is killed (-9) after the relay deleted the row and
published its event, while the broker's confirm is held back: the row is still there, and the
next casestore sends the event."""

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from services.casestore.migrate import drop_database, migrate
from shared import broker_topology
from shared.events import Envelope
from shared.settings import Settings
from tests.faults import CuttableProxy
from tests.helpers import EventTap, tap_events, until
from tests.processes import service_process
from tests.stack import Stack, isolated_settings

TEST_KEY = "test.outbox-crash"


@pytest.fixture
async def own_database(settings: Settings) -> AsyncIterator[Settings]:
    """A database and broker prefix of this test's own (beside the run's, whose settings
    fixture configures the logging): no other casestore's relay is there to take the row
    first."""
    own = isolated_settings(f"crash{uuid.uuid4().hex[:8]}", log_json=True)
    await migrate(own.database_url)
    try:
        yield own
    finally:
        await broker_topology.delete_topology(own.amqp_url, own.name_prefix)
        await drop_database(own.database_url)


async def relay_holds(db: asyncpg.Connection, event_id: uuid.UUID) -> bool:
    """Whether a relay has deleted the row in a transaction it has not committed: the row is
    still visible, and locked. Fails if the row is gone (deleted before any confirm)."""
    async with db.transaction():
        visible = await db.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", event_id)
        free = await db.fetchval("SELECT count(*) FROM (SELECT 1 FROM outbox WHERE event_id = $1"
                                 " FOR UPDATE SKIP LOCKED) AS row", event_id)
    assert visible == 1, "the row was deleted before the broker confirmed its event"
    return bool(free == 0)


@pytest.mark.timeout(180)
async def test_a_casestore_killed_between_the_delete_and_the_confirm_loses_no_event(
        own_database: Settings) -> None:
    settings = own_database
    proxy = CuttableProxy(urlsplit(settings.amqp_url).port or 5672)
    await proxy.start()
    proxied = settings.model_copy(update={
        "amqp_url": f"amqp://guest:guest@127.0.0.1:{proxy.port}/"})
    event = Envelope(type=TEST_KEY, data={"n": 1}, correlation_id="outbox-crash")
    db = await asyncpg.connect(settings.database_url)
    try:
        async with tap_events(settings, TEST_KEY) as tap:
            async with service_process(proxied, "casestore") as casestore:
                proxy.freeze_replies()  # the broker's confirms wait in the proxy
                await db.execute("INSERT INTO outbox (event_id, routing_key, envelope)"
                                 " VALUES ($1, $2, $3::jsonb)", event.id, event.type,
                                 event.to_bytes().decode())
                await until(lambda: relay_holds(db, event.id), 30,
                            "the relay never took the row")
                casestore.kill()
                await casestore.process.wait()
            assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1",
                                     event.id) == 1
            await proxy.cut()
            restarted = Stack(settings)
            await restarted.start("casestore")
            try:
                await until(lambda: _gone(db, event.id), 30, "the next relay never sent it")
            finally:
                await restarted.stop("casestore")
            # Once before the kill if it reached the broker, once by the next relay: a
            # duplicate is possible (consumers dedupe by event id), a loss is not.
            copies = [await tap.next(lambda e: e["id"] == str(event.id))]
            copies += [e for e in [await _maybe_next(tap)] if e is not None]
    finally:
        await proxy.cut()
        await db.close()
    assert 1 <= len(copies) <= 2
    assert all(c["data"] == {"n": 1} for c in copies)


async def _maybe_next(tap: EventTap) -> dict[str, Any] | None:
    try:
        return await tap.next(lambda _: True, within=1)
    except AssertionError:
        return None


async def _gone(db: asyncpg.Connection, event_id: uuid.UUID) -> bool:
    return not await db.fetchval("SELECT 1 FROM outbox WHERE event_id = $1", event_id)
