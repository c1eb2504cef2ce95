"""The per-form counter row's ceiling: how many transactions a second can take one form's case
numbers, when each must wait for the synchronous standby (and, for comparison, when not).

A case's number comes from its form's row in `case_counters`, updated in the case's own
transaction and locked until it commits, so the transactions numbering one form's cases follow
one another, each for its commit's whole round trip (with a synchronous standby: the standby's
flush too). casestore numbers a batch of cases with one update, so one form takes at most this
many batches a second, whatever the number of replicas.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

SECONDS = 3.0
CONNECTIONS = 8
BUMP = "UPDATE case_counters SET last_number = last_number + 1 WHERE form_id = $1"


async def _bump_until(pool: asyncpg.Pool, form_id: str, commit: str, until: float) -> int:
    done = 0
    async with pool.acquire() as conn:
        await conn.execute(f"SET synchronous_commit = {commit}")
        while time.monotonic() < until:
            async with conn.transaction():
                await conn.execute(BUMP, form_id)
            done += 1
    return done


async def per_second(dsn: str, form_id: str, commit: str) -> float:
    """Transactions a second bumping one form's counter from CONNECTIONS connections at once."""
    pool = await asyncpg.create_pool(dsn, min_size=CONNECTIONS, max_size=CONNECTIONS)
    try:
        until = time.monotonic() + SECONDS
        done = await asyncio.gather(*(_bump_until(pool, form_id, commit, until)
                                      for _ in range(CONNECTIONS)))
    finally:
        await pool.close()
    return round(sum(done) / SECONDS)


async def measure(dsn: str, form_id: str) -> dict[str, float]:
    return {"synchronous_standby_tx_per_s": await per_second(dsn, form_id, "on"),
            "local_commit_only_tx_per_s": await per_second(dsn, form_id, "local"),
            "connections": CONNECTIONS}
