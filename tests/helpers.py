"""Helpers the tests share: talking to the run's broker as a service would."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika

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
