# ruff: noqa: S608  (SQL built from the test's own constants)
"""Retention: rows older than their setting are purged in batches, by any number of casestore
replicas at once; the rest, and every delivery still on its way, stay."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.casestore.retention import Retention, cut_offs
from shared.settings import Settings
from tests.helpers import AutomationFactory, FormFactory, until, wait_for_cases, webhook_action
from tests.receiver import Receiver, Reply
from tests.stack import Stack

AGO = "now() - interval '40 days'"


@pytest.fixture
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(stack.settings.database_url, min_size=1, max_size=4)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


async def delivery_of(api: aiohttp.ClientSession, automation: dict[str, Any],
                      states: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        async with api.get("/api/deliveries", params={"automation": automation["id"],
                                                      "state": states}) as resp:
            found: list[dict[str, Any]] = (await resp.json())["deliveries"]
        return found[0] if found else None

    result: dict[str, Any] = await until(probe, within=20)
    return result


async def exists(pool: asyncpg.Pool, sql: str, *args: Any) -> bool:
    return bool(await pool.fetchval(f"SELECT EXISTS ({sql})", *args))


def purged_so_far(table: str) -> float:
    return REGISTRY.get_sample_value("casewire_retention_purged_total", {"table": table}) or 0.0


async def due_rows(pool: asyncpg.Pool, settings: Settings) -> dict[str, int]:
    """What a purge now should delete, per table (as its own statements select it)."""
    counts = {}
    for purge, before in cut_offs(settings, await pool.fetchval("SELECT now()")):
        counts[purge.table] = await pool.fetchval(
            f"SELECT count(*) FROM {purge.table} WHERE {purge.column} < $1"
            f" AND {purge.condition}", before)
    return counts


async def test_old_rows_are_purged_in_batches_by_two_replicas_and_the_rest_stays(
        stack: Stack, pool: asyncpg.Pool, api: aiohttp.ClientSession,
        http: aiohttp.ClientSession, make_form: FormFactory,
        make_automation: AutomationFactory, receiver: Receiver) -> None:
    hook = await make_form()
    done = await make_automation(hook["form_id"], receiver.endpoint())
    busy = receiver.endpoint(Reply(status=503, headers={"Retry-After": "60"}))
    waiting = await make_automation(hook["form_id"], busy,
                                    action=webhook_action(busy, attempts=3))
    for key in ("old-key", "new-key"):
        async with http.post(hook["url"], json={"text-field": key},
                             headers={"Idempotency-Key": key}) as resp:
            assert resp.status == 200
    old_case, new_case = sorted(await wait_for_cases(api, hook["form_id"], 2),
                                key=lambda c: c["data"]["text-field"] != "old-key")
    finished = await delivery_of(api, done, "succeeded")
    retrying = await delivery_of(api, waiting, "retrying")

    # Make the past: one of each kind of row 40 days old (the key past its expiry).
    await pool.execute(f"UPDATE processed_events SET processed_at = {AGO} WHERE event_id = $1",
                       uuid.UUID(old_case["id"]))
    await pool.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"
                       " WHERE event_id = $1", uuid.UUID(old_case["id"]))
    for delivery in (finished, retrying):
        await pool.execute(f"UPDATE deliveries SET updated_at = {AGO} WHERE id = $1",
                           uuid.UUID(delivery["id"]))
    await pool.execute(f"UPDATE delivery_attempts SET started_at = {AGO}"
                       " WHERE delivery_id = $1", uuid.UUID(finished["id"]))
    parked = [await pool.fetchval(
        "INSERT INTO outbox_parked (id, event_id, routing_key, envelope, created_at, parked_at,"
        f" error) VALUES (-(floor(random() * 1e12))::bigint, $1, 'test', '{{}}', now(), {when},"
        " 'refused') RETURNING id", uuid.uuid4()) for when in (AGO, "now()")]
    # Audit rows are kept a year: one 400 days old goes, one 40 days old stays.
    audit = [await pool.fetchval(
        "INSERT INTO audit_log (at, actor, via, action, target_type, target_id)"
        f" VALUES ({when}, 'test', 'test', 'test.old', 'test', 'x') RETURNING id")
        for when in ("now() - interval '400 days'", AGO)]

    ended = [uuid.uuid4().bytes for _ in range(2)]
    await pool.executemany("INSERT INTO console_sessions_ended (nonce_hash, expires_at)"
                           " VALUES ($1, now() + make_interval(secs => $2))",
                           [(ended[0], -1.0), (ended[1], 3600.0)])
    settings = stack.settings.model_copy(update={"retention_batch": 1})
    expected = await due_rows(pool, settings)
    assert all(expected[t] >= 1 for t in ("processed_events", "deliveries",
                                          "delivery_attempts", "idempotency_keys",
                                          "outbox_parked", "audit_log",
                                          "console_sessions_ended"))
    before = {table: purged_so_far(table) for table in expected}
    # Two replicas at once, one row per batch: they share the rows, none deleted twice.
    first, second = await asyncio.gather(Retention(pool, settings).purge(),
                                         Retention(pool, settings).purge())
    assert {t: first[t] + second[t] for t in expected} == expected
    assert {t: purged_so_far(t) - before[t] for t in expected} == expected
    assert await due_rows(pool, settings) == dict.fromkeys(expected, 0)

    old_id, new_id = uuid.UUID(old_case["id"]), uuid.UUID(new_case["id"])
    assert not await exists(pool, "SELECT 1 FROM processed_events WHERE event_id = $1", old_id)
    assert await exists(pool, "SELECT 1 FROM processed_events WHERE event_id = $1", new_id)
    assert not await exists(pool, "SELECT 1 FROM idempotency_keys WHERE event_id = $1", old_id)
    assert await exists(pool, "SELECT 1 FROM idempotency_keys WHERE event_id = $1", new_id)
    assert not await exists(pool, "SELECT 1 FROM deliveries WHERE id = $1",
                            uuid.UUID(finished["id"]))
    assert not await exists(pool, "SELECT 1 FROM delivery_attempts WHERE delivery_id = $1",
                            uuid.UUID(finished["id"]))
    # A delivery still on its way is work, however old: it stays.
    assert await exists(pool, "SELECT 1 FROM deliveries WHERE id = $1",
                        uuid.UUID(retrying["id"]))
    assert not await exists(pool, "SELECT 1 FROM outbox_parked WHERE id = $1", parked[0])
    assert await exists(pool, "SELECT 1 FROM outbox_parked WHERE id = $1", parked[1])
    assert not await exists(pool, "SELECT 1 FROM audit_log WHERE id = $1", audit[0])
    assert await exists(pool, "SELECT 1 FROM audit_log WHERE id = $1", audit[1])
    session_ended = "SELECT 1 FROM console_sessions_ended WHERE nonce_hash = $1"
    assert not await exists(pool, session_ended, ended[0])  # its cookie has expired anyway
    assert await exists(pool, session_ended, ended[1])
    # The cases themselves are no log: retention never touches them.
    async with api.get(f"/api/cases/{old_id}") as resp:
        assert resp.status == 200


def test_a_zero_day_setting_keeps_that_table_forever(settings: Settings) -> None:
    kept = settings.model_copy(update={"retention_processed_events_days": 0})
    tables = [purge.table for purge, _ in cut_offs(kept, datetime.now(UTC))]
    assert "processed_events" not in tables
    assert "idempotency_keys" in tables  # expired keys always go


async def test_the_background_task_purges_and_stops_when_asked(
        stack: Stack, pool: asyncpg.Pool) -> None:
    row_id = await pool.fetchval(
        "INSERT INTO outbox_parked (id, event_id, routing_key, envelope, created_at, parked_at,"
        f" error) VALUES (-(floor(random() * 1e12))::bigint, $1, 'test', '{{}}', now(), {AGO},"
        " 'refused') RETURNING id", uuid.uuid4())
    retention = Retention(pool, stack.settings.model_copy(
        update={"retention_interval_seconds": 0.01}))
    task = asyncio.create_task(retention.run())
    await until(lambda: _gone(pool, row_id), within=10)
    retention.stop()
    await asyncio.wait_for(task, 5)


async def _gone(pool: asyncpg.Pool, row_id: int) -> bool:
    return not await exists(pool, "SELECT 1 FROM outbox_parked WHERE id = $1", row_id)
