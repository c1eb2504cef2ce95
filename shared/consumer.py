"""Consuming a work queue: ack after the effect, dead-letter poison, hold through outages.

Each message ends in one of four ways: acked once its handler finished (its effect committed);
dead-lettered at once if it can never succeed (unparseable, or a PermanentMessageError);
requeued if it failed for its own sake (the queue's delivery limit dead-letters it in the end);
or held while a dependency is down, or while the broker refuses what its handler publishes
(shared.outages), which spends none of its deliveries.

A message dead-lettered here goes to the dead-letter exchange as a copy that says why, in
headers a reject cannot add (`x-casewire-reason`, `-error`, `-queue`, `-dead-lettered-at`);
the original is acked once the broker confirmed the copy. Should that publish fail, the message
is rejected instead and the broker dead-letters it (with its `x-death` reason, no error).
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from shared.acks import Acks, ChannelAcks
from shared.broker import MAYBE_REPEAT
from shared.errors import BrokerUnavailable, PermanentMessageError
from shared.events import Envelope
from shared.logging import bound_context
from shared.metrics import DEAD_LETTERS
from shared.outages import OUTAGES, HoldExpired, OutageGate

log = structlog.get_logger(__name__)

Handler = Callable[[Envelope], Awaitable[None]]
# A message that fails on its own with an outage-like error while every dependency is up.
OWN_RETRIES = 3
OWN_BACKOFF = 0.2
# The longest a stopping consumer waits on the broker (it may be down).
BROKER_CALL_TIMEOUT = 1.0
# Set while a handler runs: whether the broker delivered this message before (a crash, a closed
# channel) or its publisher says it may have published it before (MAYBE_REPEAT), so a handler
# can leave its shortcuts to the slower path that deduplicates.
_REDELIVERED: ContextVar[bool] = ContextVar("redelivered", default=False)
# Broker-set headers that must not follow a message handed back as a fresh copy.
_BROKER_HEADERS = ("x-delivery-count", "x-death")
# The longest error kept in a dead letter's header.
ERROR_CHARS = 2000


def is_redelivery() -> bool:
    return _REDELIVERED.get()


class Consumer:
    """Consumes a queue; on shutdown takes no new messages and lets the ones in hand finish.

    A delivery cut short by shutdown is no loss (the broker redelivers it), but draining keeps
    a rolling deploy from sending every in-flight webhook twice.
    """

    def __init__(self, queue: AbstractQueue, handler: Handler, gate: OutageGate | None = None,
                 dead_letter_exchange: str | None = None):
        """Without `dead_letter_exchange`, a message that can never succeed is rejected (the
        queue's own dead-letter exchange, if any, takes it, without the error)."""
        self._queue = queue
        self._handler = handler
        self._gate = gate
        self._dead_letter_exchange = dead_letter_exchange
        self._tag: str | None = None
        self._stopping = False
        self._in_hand: set[asyncio.Task[Any]] = set()
        self._acks = Acks()
        if gate is not None:
            gate.attach(pause=self._pause, resume=self._resume)

    @property
    def queue_name(self) -> str:
        return self._queue.name

    @property
    def in_hand(self) -> int:
        """Deliveries taken and not yet settled: this consumer's unacknowledged messages (a
        finished one counts until its coalesced ack is written)."""
        return len(self._in_hand)

    async def start(self) -> None:
        self._tag = await self._queue.consume(self._on_message)

    async def _pause(self) -> None:
        tag, self._tag = self._tag, None
        if tag is not None:
            await self._queue.cancel(tag)

    async def _resume(self) -> None:
        if self._tag is None and not self._stopping:
            await self.start()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_hand.add(task)
        acks = self._acks.of(message)
        acks.received(message)
        try:
            await self._settle(message, acks)
        except aio_pika.exceptions.ChannelInvalidStateError:
            # The channel this delivery came on is gone: the broker redelivers it.
            log.warning("settle_on_closed_channel", message_id=message.message_id)
        finally:
            if task is not None:
                self._in_hand.discard(task)

    async def _settle(self, message: AbstractIncomingMessage, acks: ChannelAcks) -> None:
        try:
            envelope = Envelope.from_bytes(message.body)
        except ValidationError as exc:
            log.error("message_unparseable", error=str(exc), routing_key=message.routing_key)
            await self._dead_letter(message, "unparseable", exc)
            acks.settled(message)
            return
        _REDELIVERED.set(bool(message.redelivered)
                         or bool((message.headers or {}).get(MAYBE_REPEAT)))
        with bound_context(correlation_id=envelope.correlation_id, event_id=str(envelope.id),
                           event_type=envelope.type):
            try:
                await self._handle(envelope)
            except HoldExpired:
                await self._hand_back(message)
                acks.settled(message)
            except (PermanentMessageError, ValidationError) as exc:
                log.error("message_dead_lettered", reason=str(exc))
                await self._dead_letter(
                    message, "invalid" if isinstance(exc, ValidationError) else "permanent", exc)
                acks.settled(message)
            except Exception:
                # Transient until proven otherwise; the queue's delivery limit dead-letters poison.
                log.exception("message_failed_requeued")
                await message.nack(requeue=True)
                acks.settled(message)
            else:
                await acks.finished(message)

    async def _handle(self, envelope: Envelope) -> None:
        """Run the handler; through an outage, hold the message until the dependency is back."""
        held_since: float | None = None
        own_failures = broker_refusals = 0
        while True:
            try:
                await self._handler(envelope)
                return
            except OUTAGES as exc:
                if self._gate is not None and await self._gate.confirms_outage():
                    if held_since is None:
                        held_since = time.monotonic()
                        log.warning("message_held_through_outage", error=repr(exc))
                    await self._gate.hold(held_since)
                    continue
                if self._gate is not None and isinstance(exc, BrokerUnavailable):
                    if held_since is None:
                        held_since = time.monotonic()
                        log.warning("message_held_broker_refused", error=repr(exc))
                    broker_refusals += 1
                    await self._gate.wait_out(held_since, broker_refusals)
                    continue
                own_failures += 1
                if own_failures > OWN_RETRIES:
                    raise
                log.warning("message_retrying", error=repr(exc), attempt=own_failures)
                await asyncio.sleep(OWN_BACKOFF * 2 ** (own_failures - 1))

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str,
                           error: Exception) -> None:
        """To the dead letters, saying why (see the module's docstring)."""
        if self._dead_letter_exchange is not None:
            DEAD_LETTERS.labels(reason).inc()
            try:
                async with asyncio.timeout(BROKER_CALL_TIMEOUT * 5):
                    await self._publish_dead_letter(message, reason, str(error))
            except (aio_pika.exceptions.AMQPError, RuntimeError, OSError, TimeoutError) as exc:
                log.warning("dead_letter_copy_failed", error=repr(exc))
            else:
                await message.ack()
                return
        await message.reject(requeue=False)

    async def _publish_dead_letter(self, message: AbstractIncomingMessage, reason: str,
                                   error: str) -> None:
        assert self._dead_letter_exchange is not None
        headers = {k: v for k, v in (message.headers or {}).items() if k != "x-delivery-count"}
        headers.update({
            "x-casewire-reason": reason,
            # A header must be UTF-8; an error may quote undecodable input.
            "x-casewire-error": error[:ERROR_CHARS].encode("utf-8", "backslashreplace").decode(),
            "x-casewire-queue": self._queue.name,
            "x-casewire-dead-lettered-at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        })
        copy = aio_pika.Message(
            message.body, headers=headers, content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message.message_id,
            # The event type stays readable when the routing key no longer says it.
            correlation_id=message.correlation_id, type=message.type or message.routing_key,
            timestamp=message.timestamp)
        exchange = await self._queue.channel.get_exchange(self._dead_letter_exchange,
                                                          ensure=False)
        await exchange.publish(copy, routing_key=message.routing_key or "", mandatory=False)

    async def _hand_back(self, message: AbstractIncomingMessage) -> None:
        """A copy back to the queue (confirmed), then the original acked: no return counted.

        If the broker is gone too, the channel's close returns the message (counted, as any
        broker outage is: nothing can be done about that from here).
        """
        headers = {k: v for k, v in (message.headers or {}).items() if k not in _BROKER_HEADERS}
        copy = aio_pika.Message(
            message.body, headers=headers, content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message.message_id,
            correlation_id=message.correlation_id, type=message.type)
        try:
            await self._queue.channel.default_exchange.publish(copy,
                                                               routing_key=self._queue.name)
        except (aio_pika.exceptions.AMQPError, RuntimeError, OSError) as exc:
            log.warning("hand_back_failed", error=repr(exc))
            with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError, OSError):
                await message.nack(requeue=True)
            return
        await message.ack()
        log.warning("message_handed_back_during_outage")

    async def stop(self, grace_seconds: float) -> None:
        """With the broker down there is nothing to cancel; still wait for work in hand."""
        self._stopping = True
        try:
            # A robust channel would wait for a reconnect that may never come.
            async with asyncio.timeout(BROKER_CALL_TIMEOUT):
                await self._pause()
        except (aio_pika.exceptions.AMQPError, RuntimeError, OSError, TimeoutError) as exc:
            log.warning("stop_consuming_on_dead_connection", queue=self._queue.name,
                        error=repr(exc))
        if self._gate is not None:
            await self._gate.close()  # messages held through an outage go back at once
        if self._in_hand:
            _, unfinished = await asyncio.wait(set(self._in_hand), timeout=grace_seconds)
            if unfinished:
                log.warning("shutdown_with_messages_in_hand", count=len(unfinished),
                            note="they will be redelivered")
        with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError, OSError,
                                 TimeoutError):
            async with asyncio.timeout(BROKER_CALL_TIMEOUT):
                await self._queue.channel.close()  # unless it went with the connection already
