"""Time-based triggers at scale: timers claimed from a big table, many falling due at once.

1. The table is filled with pending timers far in the future (cases and timers by SQL, in bulk:
   the figures are about the scheduler, not about creating cases), and the claim the scheduler
   runs (`repo.timers.take_due`) is timed with few and with many pending: it should not grow.
2. A burst of them is moved to fall due at the same moment. Every firing leaves casestore as a
   `case.timer_due` event; a queue of the benchmark's own counts them: firings per second from
   the moment they fell due to the last one, and how late each fired (`late_by`).

The automation's If never holds, so the dispatcher drops the firings: the phase measures the
scheduler and the path to the dispatcher, not deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import TYPE_CHECKING, Any

import aio_pika
import asyncpg
import orjson

from bench.stats import percentiles
from services.casestore.repo import timers as timer_rows
from shared import broker_topology

if TYPE_CHECKING:
    from bench.casewire import CasewireBench

FORM = "bench-timers"
CHUNK = 100_000


def automation() -> dict[str, Any]:
    return {"name": "bench timers", "when": [{"event": "lead_time_exceeded", "duration": "P365D",
                                              "until_status": ["closed"]}],
            "if": {"field": "status", "op": "eq", "value": "never"},
            "action": {"type": "outgoing_webhook",
                       "settings": {"url": "http://127.0.0.1:9/never"}}}


async def measure(bench: CasewireBench, pending: int, burst: int) -> dict[str, Any]:
    await bench.stack.create_form(FORM, automation())
    db = await asyncpg.connect(bench.stack.database_url)
    try:
        automation_id = await db.fetchval("SELECT id FROM automations WHERE form_id = $1", FORM)
        await _fill(db, automation_id, min(pending, burst * 2))
        small = await _claim_ms(db)
        await _fill(db, automation_id, pending, start=min(pending, burst * 2))
        large = await _claim_ms(db)
        bench.say(f"timers: claim {small:.2f} ms at {min(pending, burst * 2):,} pending, "
                  f"{large:.2f} ms at {pending:,}; {burst:,} falling due at once")
        firing = await _burst(bench, db, burst)
    finally:
        await db.close()
    return {"pending": pending, "claim_ms_small": small, "claim_ms_large": large,
            "small": min(pending, burst * 2), **firing}


async def _fill(db: asyncpg.Connection, automation_id: uuid.UUID, upto: int,
                start: int = 0) -> None:
    """Cases `start`+1 .. `upto` of the form, each with a timer a year ahead."""
    for first in range(start, upto, CHUNK):
        last = min(upto, first + CHUNK)
        await db.execute(
            "INSERT INTO cases (id, form_id, case_number, status, data, creator)"
            " SELECT gen_random_uuid(), $1, n, 'registered', '{}'::jsonb, 'bench'"
            " FROM generate_series($2::bigint, $3::bigint) n", FORM, first + 1, last)
        await db.execute(
            "INSERT INTO timers (automation_id, case_id, trigger_index, due_at)"
            " SELECT $1, id, 0, now() + interval '365 days' + case_number * interval '1 second'"
            " FROM cases WHERE form_id = $2 AND case_number BETWEEN $3 AND $4",
            automation_id, FORM, first + 1, last)
    await db.execute("ANALYZE timers")


async def _claim_ms(db: asyncpg.Connection, runs: int = 20) -> float:
    """The scheduler's claim (nothing due), timed; the mean of `runs`, in ms."""
    took = []
    for _ in range(runs):
        async with db.transaction():
            started = time.perf_counter()
            await timer_rows.take_due(db, 1000)
            took.append(time.perf_counter() - started)
    return sum(took) / len(took) * 1000


async def _burst(bench: CasewireBench, db: asyncpg.Connection, burst: int) -> dict[str, Any]:
    connection = await aio_pika.connect(bench.stack.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        exchange = await broker_topology.declare_exchanges(channel,
                                                  broker_topology.Names(bench.stack.prefix))
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="case.timer_due")
        seen: list[float] = []
        late: list[float] = []
        done = asyncio.Event()

        async def count(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            seen.append(time.time())
            late.append(orjson.loads(message.body)["data"]["timer"]["late_by"])
            await message.ack()
            if len(seen) >= burst:
                done.set()

        await queue.consume(count)
        due_at = await db.fetchval(
            "WITH chosen AS (SELECT id FROM timers ORDER BY id LIMIT $1)"
            " UPDATE timers SET due_at = now() + interval '2 seconds'"
            " FROM chosen WHERE timers.id = chosen.id RETURNING extract(epoch FROM due_at)",
            burst)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=bench.profile.drain_timeout)
    elapsed = (max(seen) - float(due_at)) if seen else None
    return {"burst": burst, "fired": len(seen),
            "rate": len(seen) / elapsed if elapsed else None,
            "late_by_ms": percentiles(late)}
