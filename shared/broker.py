"""RabbitMQ plumbing: the robust connection and confirmed publishing (the topology both declare:
broker_topology.py; consuming: consumer.py)."""

import asyncio
import time

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from pamqp.commands import Basic
from prometheus_client import Histogram

from shared.broker_topology import (
    Names,
    dead_letters_as_declared,
    declare_topology,
)
from shared.errors import BrokerUnavailable, OutcomeUnknown, Unroutable
from shared.events import Envelope
from shared.failover import connect as connect  # the process's one connection, for every service
from shared.settings import Settings
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)
# How long a readiness check waits for the publisher's channel to finish restoring.
RESTORED_WITHIN = 0.05
# The shortest time between two renewals of a publisher's channel after nacks.
RENEW_SECONDS = 1.0

PUBLISH_CONFIRM_SECONDS = Histogram(
    "casewire_publish_confirm_seconds",
    "From a publish to the broker's confirm (confirmed publishes only)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


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

