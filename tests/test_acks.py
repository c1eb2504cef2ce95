"""Coalesced acks: finished messages are acked (together where they can be), unfinished never."""

import asyncio
import uuid

import aio_pika

from shared.consumer import Consumer
from shared.events import CASE_CREATED, Envelope, new_event
from shared.settings import Settings
from tests.helpers import names


async def test_a_message_still_in_hand_is_never_acked_and_holds_back_no_other(
        settings: Settings) -> None:
    events = [new_event(CASE_CREATED, {"n": n}) for n in range(100)]
    slow_id = events[0].id  # the lowest delivery tag: every other one is above it
    done: list[uuid.UUID] = []
    release = asyncio.Event()

    async def handler(envelope: Envelope) -> None:
        if envelope.id == slow_id:
            await release.wait()
        done.append(envelope.id)

    name = names(settings).queue(f"acks-{uuid.uuid4().hex[:6]}")
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=True,
                                            arguments={"x-queue-type": "quorum"})
        try:
            for event in events:
                await channel.default_exchange.publish(
                    aio_pika.Message(event.to_bytes(), delivery_mode=2), routing_key=name)
            consuming = await connection.channel()
            await consuming.set_qos(prefetch_count=200)
            consumer = Consumer(await consuming.get_queue(name), handler)
            await consumer.start()
            for _ in range(200):
                if len(done) == 99:
                    break
                await asyncio.sleep(0.05)
            assert len(done) == 99
            await asyncio.sleep(0.2)  # the acks are written, not awaited: give them time
            # Closing the channel returns every unacked message to the queue.
            await consuming.close()
            release.set()
            for _ in range(100):
                declared = await channel.declare_queue(name, passive=True)
                if declared.declaration_result.message_count:
                    break
                await asyncio.sleep(0.05)
            assert declared.declaration_result.message_count == 1
            message = await queue.get(timeout=5)
            assert Envelope.from_bytes(message.body).id == slow_id
            await message.ack()
        finally:
            await channel.queue_delete(name)
