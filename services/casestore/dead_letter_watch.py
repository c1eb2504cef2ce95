"""Tells the operational webhook when the dead-letter queue grows (`dead_letter.added`).

Messages reach the dead letters from every service, and from the broker itself (a message
past the delivery limit), so casestore watches the queue's depth rather than each sender:
every CASEWIRE_PIPELINE_METRICS_SECONDS it reads it (a passive declare) and, if it grew since
the depth last told of, announces the increase. The depth told of is one row that replicas
compare and set, so each increase is announced once. A depth that fell (requeued, purged) is
noted without a word. Nothing is read while no operational webhook takes the event.
"""

import contextlib

import aio_pika
import asyncpg
import structlog
from aio_pika.abc import AbstractRobustConnection

from services.casestore import operational
from services.casestore.repo import operational as operational_rows
from shared import broker_topology
from shared.tasks import every

log = structlog.get_logger(__name__)


async def look_once(pool: asyncpg.Pool, connection: AbstractRobustConnection,
                    names: broker_topology.Names) -> int | None:
    """Compare the depth with what was told; the increase announced, if any."""
    async with pool.acquire() as conn:
        listening = await operational_rows.listening(conn)
        seen = await operational_rows.dead_letters_seen(conn)
    if listening is None or seen is None or "dead_letter.added" not in listening.events:
        return None
    channel = await connection.channel(publisher_confirms=False)
    try:
        depth = (await broker_topology.queue_state(channel, names.dead_letters)).ready
    finally:
        with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError, OSError):
            await channel.close()
    if depth == seen:
        return None
    async with pool.acquire() as conn, conn.transaction():
        if not await operational_rows.note_dead_letters(conn, seen, depth):
            return None  # another replica told it
        if depth < seen:
            return None
        await operational.emit(conn, "dead_letter.added", {
            "queue": names.dead_letters, "added": depth - seen, "waiting": depth})
    return depth - seen


async def watch_forever(pool: asyncpg.Pool, connection: AbstractRobustConnection,
                        names: broker_topology.Names, seconds: float) -> None:
    # Through a broker or database outage, the next look tells what the failed one missed.
    await every(seconds, lambda: look_once(pool, connection, names), "dead_letters_not_watched")
