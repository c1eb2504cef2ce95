"""The broker's topology: every exchange and queue, derived from one name prefix, declared
alike by every process that publishes or consumes; and what a passive declare tells of a queue."""

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, AbstractRobustConnection

from shared.errors import DependencyUnavailable
from shared.events import (
    CASE_CREATE_REQUESTED,
    CASE_CREATED,
    CASE_DELETED,
    CASE_RESPONSE_DATA,
    CASE_TIMER_DUE,
    CASE_UPDATED,
    DELIVERY_ATTEMPTED,
    DELIVERY_DUE,
    DELIVERY_REQUESTED,
)

log = structlog.get_logger(__name__)

# Reading the dead letters hands each one back (basic.nack): RabbitMQ 4.0 to 4.2 count every
# return against a quorum queue's delivery limit (20 by default), and the dead-letter queue has
# nowhere further to send a message, so its limit is set out of reach.
DEAD_LETTER_RETURNS = 1_000_000


@dataclass(frozen=True)
class Names:
    """Every exchange and queue name, derived from the one configured prefix."""

    prefix: str

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.dead-letters"

    def queue(self, consumer: str) -> str:
        return f"{self.prefix}.{consumer}"


def dead_letter_arguments(max_length: int) -> dict[str, Any]:
    """The dead-letter queue's declare arguments: a quorum queue keeping the newest
    `max_length` messages (x-overflow drop-head, the default, drops the oldest)."""
    return {"x-queue-type": "quorum", "x-max-length": max_length,
            "x-delivery-limit": DEAD_LETTER_RETURNS}


async def dead_letters_as_declared(connection: AbstractRobustConnection, names: Names,
                                   max_length: int) -> dict[str, Any]:
    """The arguments this process declares the dead-letter queue with: its length limit; or, if
    the queue exists with other arguments (an older Casewire, another CASEWIRE_DEAD_LETTER_MAX),
    none: it is declared passively, as it is, since a declare cannot change a queue's arguments
    (PRECONDITION_FAILED). Tried on a bare channel of the connection, which the broker may
    close without the robust channel machinery reopening it."""
    wanted = dead_letter_arguments(max_length)
    if connection.transport is None:
        raise DependencyUnavailable("the broker connection closed during start-up")
    channel = await connection.transport.connection.channel()
    try:
        await channel.queue_declare(names.dead_letters, durable=True, arguments=wanted)
    except aio_pika.exceptions.ChannelPreconditionFailed as exc:
        log.warning("dead_letter_queue_arguments_differ", queue=names.dead_letters,
                    error=str(exc), note="its length limit is as it was created; "
                    "`casewire queues --recreate-dead-letters` applies CASEWIRE_DEAD_LETTER_MAX")
        return {}
    finally:
        with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError, OSError):
            await channel.close()
    return wanted


async def declare_exchanges(channel: AbstractChannel, names: Names,
                            dead_letters: Mapping[str, Any] | None = None) -> AbstractExchange:
    """Declare the events exchange and the dead-letter exchange; the dead-letter queue too when
    given its arguments (`dead_letters_as_declared`: empty, passively)."""
    dlx = await channel.declare_exchange(
        names.dead_letter, aio_pika.ExchangeType.TOPIC, durable=True
    )
    if dead_letters is not None:
        dead = await channel.declare_queue(names.dead_letters, durable=True,
                                           arguments=dict(dead_letters) or None,
                                           passive=not dead_letters)
        await dead.bind(dlx, routing_key="#")
    return await channel.declare_exchange(names.events, aio_pika.ExchangeType.TOPIC, durable=True)


# Every durable work queue and the events it receives. Each publisher declares all of them, so
# an event is never unroutable (and lost) because its consumer has not started yet.
WORK_QUEUES: dict[str, tuple[str, ...]] = {
    "casestore": (CASE_CREATE_REQUESTED, DELIVERY_REQUESTED, DELIVERY_ATTEMPTED,
                  CASE_RESPONSE_DATA),
    "dispatcher": (CASE_CREATED, CASE_UPDATED, CASE_DELETED, CASE_TIMER_DUE, DELIVERY_DUE),
}


async def declare_work_queue(channel: AbstractChannel, names: Names, consumer: str,
                             delivery_limit: int, dead_letters: Mapping[str, Any] | None = None
                             ) -> AbstractQueue:
    """A durable quorum queue with a delivery limit and a dead-letter exchange."""
    exchange = await declare_exchanges(channel, names, dead_letters)
    queue = await channel.declare_queue(
        names.queue(consumer),
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": names.dead_letter,
        },
    )
    for key in WORK_QUEUES[consumer]:
        await queue.bind(exchange, routing_key=key)
    return queue


async def declare_topology(channel: AbstractChannel, names: Names, delivery_limit: int,
                           dead_letters: Mapping[str, Any]) -> AbstractExchange:
    """Every work queue and the dead-letter queue: each publisher declares all of them."""
    for consumer in WORK_QUEUES:
        await declare_work_queue(channel, names, consumer, delivery_limit)
    return await declare_exchanges(channel, names, dead_letters)


async def delete_topology(amqp_url: str, prefix: str) -> None:
    """Remove every queue and exchange under a prefix (test and benchmark runs clean up)."""
    names = Names(prefix)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for queue in all_queues(names):
            await channel.queue_delete(queue)
        for exchange in (names.events, names.dead_letter):
            await channel.exchange_delete(exchange)



@dataclass(frozen=True)
class QueueState:
    """What a passive declare tells of a queue: messages ready (not those delivered and not yet
    acknowledged) and consumers."""

    ready: int
    consumers: int


async def queue_state(channel: AbstractChannel, queue_name: str) -> QueueState:
    """Raises aio_pika.exceptions.ChannelNotFoundEntity (closing the channel) if it is not there."""
    result = (await channel.declare_queue(queue_name, passive=True)).declaration_result
    return QueueState(int(result.message_count or 0), int(result.consumer_count or 0))


def all_queues(names: Names) -> tuple[str, ...]:
    """Every work queue, then the dead-letter queue."""
    return (*map(names.queue, WORK_QUEUES), names.dead_letters)


async def consumer_count(channel: AbstractChannel, queue_name: str) -> int:
    """How many consumers the broker sees on a queue (a robust reconnect can come back with 0)."""
    return (await queue_state(channel, queue_name)).consumers
