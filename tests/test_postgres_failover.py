"""Postgres with a standby (CASEWIRE_DATABASE_URL naming both hosts, target_session_attrs=
read-write): a primary killed and its synchronous standby promoted loses no committed case,
and Casewire goes on writing to the new primary by itself, its LISTENs too.

The pair runs on loopback ports of its own (bench/topology/postgres.py), never the machine's
own Postgres; `make topology` does the same under load (scenario postgres-failover).
"""

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from bench.topology.postgres import PostgresPair
from shared.db import listen
from shared.settings import Settings
from tests.helpers import call, sample_form, until
from tests.stack import Stack, isolated_settings, running_stack


@pytest.fixture(scope="module")
def pair() -> Iterator[PostgresPair]:
    # Not under pytest's tmp_path (mode 0700): the postgres user must reach its directories.
    work = Path(tempfile.mkdtemp(prefix="casewire-pg-"))
    work.chmod(0o755)
    running = PostgresPair(work / "pg")
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
async def stack_on_pair(pair: PostgresPair) -> AsyncIterator[Stack]:
    settings = isolated_settings(f"pg{uuid.uuid4().hex[:8]}",
                                 database_url=pair.dsn("casewire_failover"))
    async with running_stack(settings) as running:
        yield running


async def cases_on(dsn: str, form_id: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT data->>'text-field' AS text FROM cases WHERE form_id = $1",
                                form_id)
    finally:
        await conn.close()
    return sorted(row["text"] for row in rows)


@pytest.mark.timeout(180)
async def test_a_failover_keeps_every_committed_case_and_casewire_writes_on(
        pair: PostgresPair, stack_on_pair: Stack) -> None:
    settings = stack_on_pair.settings
    form_id = f"f-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {settings.admin_token}"}
    async with aiohttp.ClientSession(base_url=settings.casestore_url, headers=headers) as api, \
            aiohttp.ClientSession() as http:
        await call(api, "POST", "/api/forms", 201, sample_form(form_id))
        hook = await call(api, "PUT", f"/api/forms/{form_id}/incoming-webhook", 200,
                          {"enabled": True, "authenticate_user": False})

        async def accepted(text: str) -> bool:
            async with http.post(hook["url"], json={"text-field": text}) as resp:
                return resp.status == 200

        await until(lambda: accepted("before"), within=10)
        primary = pair.primary_dsn("casewire_failover")
        await until(lambda: _has(primary, form_id, ["before"]), within=20)
        pair.failover()  # the commit above was acknowledged by the standby before this
        assert await accepted("after")  # ingest needs no database
        promoted = pair.primary_dsn("casewire_failover")
        await until(lambda: _has(promoted, form_id, ["after", "before"]), within=60,
                    failure="casestore did not write to the promoted standby")


async def _has(dsn: str, form_id: str, texts: list[str]) -> bool:
    try:
        return await cases_on(dsn, form_id) == texts
    except (OSError, asyncpg.PostgresError):
        return False


async def test_a_listen_connection_that_ends_is_opened_again(settings: Settings,
                                                            stack: Stack) -> None:
    """The outbox relay's and the delivery scheduler's NOTIFY wake-ups survive a failover (or a
    restart): once their connection ends, a new one is opened."""
    channel = f"casewire_listen_{uuid.uuid4().hex[:8]}"
    woken = asyncio.Event()
    listener = await listen(settings.database_url, channel, lambda *_: woken.set())
    assert listener is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        ended = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = $1",
            f'LISTEN "{channel}"')
        assert ended == 1

        async def notified() -> bool:  # until() asks again every 50 ms
            await conn.execute(f'NOTIFY "{channel}"')
            return woken.is_set()

        await until(notified, within=20, failure="the LISTEN was never opened again")
    finally:
        await conn.close()
        await listener.close()
