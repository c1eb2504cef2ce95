"""RabbitMQ plumbing: robust connection, topology, confirmed publishing (consuming: consumer.py)."""

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from pamqp.commands import Basic
from prometheus_client import Histogram

from shared.errors import BrokerUnavailable, DependencyUnavailable, OutcomeUnknown, Unroutable
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
    Envelope,
)
from shared.failover import connect as connect  # the process's one connection, for every service
from shared.settings import Settings
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)
# How long a readiness check waits for the publisher's channel to finish restoring.
RESTORED_WITHIN = 0.05
# The shortest time between two renewals of a publisher's channel after nacks.
RENEW_SECONDS = 1.0
# Reading the dead letters hands each one back (basic.nack): RabbitMQ 4.0 to 4.2 count every
# return against a quorum queue's delivery limit (20 by default), and the dead-letter queue has
# nowhere further to send a message, so its limit is set out of reach.
DEAD_LETTER_RETURNS = 1_000_000

PUBLISH_CONFIRM_SECONDS = Histogram(
    "casewire_publish_confirm_seconds",
    "From a publish to the broker's confirm (confirmed publishes only)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


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


# A header on a message that may have been published before (shared.consumer treats it as a
# redelivery): the broker's own redelivered flag only covers a message it delivered before.
MAYBE_REPEAT = "x-casewire-maybe-repeat"


class Publisher:
    """Publishes envelopes as persistent, mandatory messages and waits for the broker's confirm.

    A failure raises BrokerUnavailable when the message surely never reached the broker (or
    the broker refused it), OutcomeUnknown when it may have (sent, but no confirm in time or
    the connection died), Unroutable when no queue is bound to its routing key.
    """

    def __init__(self, connection: AbstractRobustConnection, channel: AbstractRobustChannel,
                 exchange: AbstractExchange, timeout: float):
        self._connection = connection
        self._channel = channel
        self._exchange = exchange.name
        self._timeout = timeout
        self._renewing: asyncio.Task[None] | None = None
        self._renewed_at = -RENEW_SECONDS

    @classmethod
    async def open(cls, connection: AbstractRobustConnection, settings: Settings) -> "Publisher":
        names = Names(settings.name_prefix)
        dead_letters = await dead_letters_as_declared(connection, names, settings.dead_letter_max)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await declare_topology(channel, names, settings.delivery_limit, dead_letters)
        return cls(connection, channel, exchange, settings.publish_timeout)

    def can_publish(self) -> bool:
        """No I/O: the connection is up and this channel is open (else a publish would wait)."""
        return self._connection.connected.is_set() and not self._channel.is_closed

    async def ready(self) -> bool:
        """A publish would go out now: after a reconnect the channel is open some time before it
        has restored its topology, and publishes queue behind that restore."""
        if not self.can_publish():
            return False
        try:
            async with asyncio.timeout(RESTORED_WITHIN):
                await self._channel.ready()
        except TimeoutError:
            return False
        return True

    async def publish(self, envelope: Envelope) -> None:
        """Return once the broker has confirmed; raise DependencyUnavailable otherwise."""
        await self.publish_json(envelope.to_bytes(), envelope.type, str(envelope.id),
                                envelope.correlation_id)

    async def publish_json(self, body: bytes, routing_key: str, message_id: str,
                           correlation_id: str, maybe_repeat: bool = False) -> None:
        """`publish` for an envelope already in JSON (the outbox holds them so);
        `maybe_repeat`: it may have been published before (MAYBE_REPEAT)."""
        # pamqp properties straight to the channel: aio_pika.Message costs several times more
        # per publish, and every case passes here twice.
        properties = Basic.Properties(
            content_type="application/json", delivery_mode=PERSISTENT, message_id=message_id,
            correlation_id=correlation_id, message_type=routing_key,
            headers={MAYBE_REPEAT: True} if maybe_repeat else None)
        handed_over = False
        started = time.perf_counter()
        try:
            # A robust connection that is reconnecting makes publish wait: bound it all.
            async with asyncio.timeout(self._timeout):
                channel = await self._channel.get_underlay_channel()
                # From here the frames may reach the broker. A wait for the channel lock
                # (behind another publish's write) counts as sent too: unknown, never a
                # false "nothing happened".
                handed_over = True
                await channel.basic_publish(body, exchange=self._exchange,
                                            routing_key=routing_key, properties=properties,
                                            mandatory=True)
        except aio_pika.exceptions.PublishError as exc:
            raise Unroutable(f"{routing_key} is bound to no queue: {exc!r}") from exc
        except (aio_pika.exceptions.DeliveryError,
                aio_pika.exceptions.ChannelInvalidStateError) as exc:
            # A nack is the broker refusing the message; a closed channel refuses to send.
            if isinstance(exc, aio_pika.exceptions.DeliveryError):
                self._renew_channel()
            raise BrokerUnavailable(f"{routing_key} not accepted: {exc!r}") from exc
        except (OSError, aio_pika.exceptions.AMQPError, RuntimeError) as exc:  # timeouts too
            if handed_over:
                raise OutcomeUnknown(f"{routing_key} sent, not confirmed: {exc!r}") from exc
            raise BrokerUnavailable(f"{routing_key} not sent: {exc!r}") from exc
        PUBLISH_CONFIRM_SECONDS.observe(time.perf_counter() - started)

    def _renew_channel(self) -> None:
        """After a nack, the channel is closed and opened afresh (at most once a second).

        RabbitMQ 3.10 goes on refusing every publish of a channel whose first publish to a
        quorum queue came while the queue was electing a new leader (its node killed) until
        that node is back (17 s in make topology), while a channel opened after the election
        is served at once. A nack for any other reason costs one channel reopen.
        """
        if self._renewing is not None or time.monotonic() - self._renewed_at < RENEW_SECONDS:
            return
        self._renewed_at = time.monotonic()
        self._renewing = asyncio.create_task(self._reopen(), name="publisher-renew")

    async def _reopen(self) -> None:
        try:
            await self._channel.close()
            await self._channel.reopen()  # a robust channel declares its topology again
            log.warning("publisher_channel_renewed_after_nack")
        except (aio_pika.exceptions.AMQPError, RuntimeError, OSError) as exc:
            log.warning("publisher_channel_not_renewed", error=repr(exc))
        finally:
            self._renewing = None

    async def close(self) -> None:
        if self._renewing is not None:
            await cancel_and_wait(self._renewing)
        await self._channel.close()


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
