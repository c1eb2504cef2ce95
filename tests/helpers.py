"""Helpers the tests share: talking to the run's broker as a service would."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg

from shared.events import Envelope
from shared.settings import Settings


async def publish_raw(settings: Settings, routing_key: str, bodies: list[bytes]) -> None:
    """Publish messages onto the run's events exchange as a service would, bypassing it."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{settings.name_prefix}.events")
        for body in bodies:
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=routing_key)


async def until(probe: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
    """Poll until `probe` returns something truthy; fail if it never does."""
    for _ in range(int(within * 20)):
        result = await probe()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


async def publish_event(settings: Settings, event: Envelope, times: int = 1) -> None:
    """Straight onto the events exchange, as the dispatcher (or a redelivery) would."""
    await publish_raw(settings, event.type, [event.to_bytes()] * times)


async def processed(settings: Settings, event_id: uuid.UUID, within: float = 10.0) -> None:
    """Wait until casestore has applied (or deliberately skipped) the event."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        for _ in range(int(within * 20)):
            if await conn.fetchval("SELECT 1 FROM processed_events WHERE consumer = 'casestore'"
                                   " AND event_id = $1", event_id):
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise AssertionError(f"event {event_id} was never processed")
