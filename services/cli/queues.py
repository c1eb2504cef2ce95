"""`casewire queues` and `casewire status`: the broker's queues; the whole system at a glance."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import aio_pika
import aiohttp
import asyncpg
from aio_pika.abc import AbstractConnection

from services.casestore.repo import outbox as outbox_rows
from services.cli import dead_letter_queue
from services.cli.output import say, table
from shared import broker_topology
from shared.errors import DependencyUnavailable
from shared.secrets import redacted_url
from shared.settings import Settings

CONNECT_SECONDS = 10.0
READY_SECONDS = 3.0


@contextlib.asynccontextmanager
async def broker_connection(settings: Settings) -> AsyncIterator[AbstractConnection]:
    """A plain connection (not robust): a command fails at once when the broker is away."""
    try:
        connection = await asyncio.wait_for(aio_pika.connect(settings.amqp_url), CONNECT_SECONDS)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
        raise DependencyUnavailable(
            f"Cannot reach RabbitMQ at {redacted_url(settings.amqp_url)} ({exc!r}); "
            "start it or set CASEWIRE_AMQP_URL.") from exc
    async with connection:
        yield connection


async def queue_rows(connection: AbstractConnection, names: broker_topology.Names
                     ) -> list[tuple[str, object, object]]:
    """Each queue's ready messages and consumers, as the broker says."""
    rows: list[tuple[str, object, object]] = []
    for queue in broker_topology.all_queues(names):
        channel = await connection.channel()
        try:
            state = await broker_topology.queue_state(channel, queue)
        except aio_pika.exceptions.ChannelClosed:
            rows.append((queue, "not declared yet", None))
            continue
        rows.append((queue, state.ready, state.consumers))
        await channel.close()
    return rows


async def queues(settings: Settings, recreate_dead_letters: bool = False) -> int:
    """Print each Casewire queue's depth and consumers; or recreate the dead-letter queue."""
    names = broker_topology.Names(settings.name_prefix)
    async with broker_connection(settings) as connection:
        if recreate_dead_letters:
            channel = await connection.channel(on_return_raises=True)
            kept = await dead_letter_queue.recreate(channel, names, settings.dead_letter_max)
            say(f"{names.dead_letters} recreated with x-max-length {settings.dead_letter_max}; "
                f"{kept} message(s) kept. Restart the services with the same "
                "CASEWIRE_DEAD_LETTER_MAX.")
            return 0
        rows = await queue_rows(connection, names)
    table(("queue", "ready", "consumers"), rows, empty="no queues")
    return 0


async def _readiness(http: aiohttp.ClientSession, url: str) -> tuple[bool, str]:
    try:
        async with http.get(f"{url.rstrip('/')}/readyz") as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return False, f"unreachable ({exc.__class__.__name__})"
    failing = [name for name, ok in (body.get("checks") or {}).items() if not ok]
    if resp.status == 200:
        return True, "ready"
    return False, f"not ready: {', '.join(failing) or body.get('error', resp.status)}"


async def service_rows(settings: Settings) -> list[tuple[str, str, bool, str]]:
    urls = {"ingest": settings.public_base_url, "casestore": settings.casestore_url,
            "dispatcher": settings.dispatcher_url}
    async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=READY_SECONDS)) as http:
        answers = await asyncio.gather(*(_readiness(http, url) for url in urls.values()))
    return [(name, url, ok, detail)
            for (name, url), (ok, detail) in zip(urls.items(), answers, strict=True)]


async def outbox_rows_of(settings: Settings) -> list[tuple[object, object, object]]:
    """The outbox: rows waiting, the oldest one's age, rows parked for good."""
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return [(f"unreachable ({exc.__class__.__name__})", None, None)]
    try:
        waiting, oldest = await outbox_rows.outbox_backlog(conn)
        parked = await outbox_rows.parked_count(conn)
    finally:
        await conn.close()
    return [(waiting, timedelta(seconds=round(oldest)) if waiting else None, parked)]


async def status(settings: Settings) -> int:
    """Every service's readiness, the queues and the outbox; exit 1 if anything is not ready."""
    services = await service_rows(settings)
    table(("service", "url", "ready", "detail"), services, empty="no services",
          title="Services")
    try:
        async with broker_connection(settings) as connection:
            queue_table = await queue_rows(connection, broker_topology.Names(settings.name_prefix))
    except DependencyUnavailable as exc:
        queue_table = [(str(exc), None, None)]
    table(("queue", "ready", "consumers"), queue_table, empty="no queues", title="Queues")
    table(("waiting", "oldest", "parked"), await outbox_rows_of(settings), empty="",
          title="Outbox")
    return 0 if all(ok for _, _, ok, _ in services) else 1
