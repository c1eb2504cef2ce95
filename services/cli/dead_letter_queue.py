"""The dead-letter queue as an operator sees it: each message with why it is there, read
without losing or reordering any, requeued to where it came from, or removed.

Reading is `basic.get` of every message without acknowledging it, then `basic.nack` with
requeue of each, in the order taken: a quorum queue delivers returned messages first, in the
order returned, so the queue is as it was. While a command holds them the messages count as
unacknowledged, not ready; if the command dies, the broker returns them all the same. (The
queue's delivery limit is set out of reach, shared.broker_topology.DEAD_LETTER_RETURNS, since some
RabbitMQ versions count such returns.)

Why a message is there: Casewire's own headers when a service dead-lettered it (the reason, the
error, the queue, the time: shared/consumer.py), else the broker's `x-first-death-*` and
`x-death` (a message past the delivery limit, or rejected without a copy).
"""

import contextlib
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from shared import broker_topology

# Headers that describe one stay in the dead letters; a requeued message leaves them behind.
STAY_HEADERS = ("x-death", "x-delivery-count", "x-first-death-reason", "x-first-death-queue",
                "x-first-death-exchange", "x-last-death-reason", "x-last-death-queue",
                "x-last-death-exchange", "x-casewire-reason", "x-casewire-error",
                "x-casewire-queue", "x-casewire-dead-lettered-at")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _first_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    """The broker's record of the first time the message was dead-lettered (x-death lists the
    most recent first)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[-1], Mapping):
        return deaths[-1]
    return {}


def _when(headers: Mapping[str, Any], death: Mapping[str, Any]) -> datetime | None:
    ours = _text(headers.get("x-casewire-dead-lettered-at"))
    if ours:
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(ours)
    time = death.get("time")
    return time if isinstance(time, datetime) else None


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message and what is known of why."""

    id: str
    reason: str
    queue: str | None
    type: str
    time: datetime | None
    error: str | None
    message: AbstractIncomingMessage

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> "DeadLetter":
        headers: Mapping[str, Any] = message.headers or {}
        death = _first_death(headers)
        return cls(
            # Casewire's messages carry their event id; another, its body's digest.
            id=message.message_id or f"sha-{hashlib.sha256(message.body).hexdigest()[:16]}",
            reason=_text(headers.get("x-casewire-reason") or headers.get("x-first-death-reason")
                         or death.get("reason")) or "unknown",
            queue=_text(headers.get("x-casewire-queue") or headers.get("x-first-death-queue")
                        or death.get("queue")),
            type=message.type or message.routing_key or "-",
            time=_when(headers, death),
            error=_text(headers.get("x-casewire-error")),
            message=message)

    def matches(self, *, event_type: str | None = None, queue: str | None = None,
                reason: str | None = None) -> bool:
        """`queue` may be a full name or its last part (`casestore`)."""
        return ((event_type is None or self.type == event_type)
                and (reason is None or self.reason == reason)
                and (queue is None or self.queue == queue
                     or (self.queue or "").endswith(f".{queue}")))


class Held:
    """Every message of the dead-letter queue, taken and not yet acknowledged."""

    def __init__(self, letters: list[DeadLetter]):
        self.letters = letters
        self._settled: set[int] = set()

    async def remove(self, letter: DeadLetter) -> None:
        """Acknowledge it: it leaves the dead letters."""
        await letter.message.ack()
        self._settled.add(id(letter))

    async def hand_back(self) -> None:
        for letter in self.letters:
            if id(letter) not in self._settled:
                await letter.message.nack(requeue=True)


@contextlib.asynccontextmanager
async def held(channel: AbstractChannel, queue_name: str) -> AsyncIterator[Held]:
    """Take every message; on leaving, hand back (in order) those not removed meanwhile."""
    queue = await channel.get_queue(queue_name)
    letters = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        letters.append(DeadLetter.of(message))
    taken = Held(letters)
    try:
        yield taken
    finally:
        await taken.hand_back()


async def requeue(channel: AbstractChannel, letter: DeadLetter) -> None:
    """Publish it to its original queue as it first came (confirmed); the caller then removes
    it. Raises aio_pika.exceptions.PublishError if that queue is gone."""
    if letter.queue is None:
        raise ValueError(f"{letter.id}: the queue it came from is not known")
    original = letter.message
    headers = {k: v for k, v in (original.headers or {}).items() if k not in STAY_HEADERS}
    copy = aio_pika.Message(
        original.body, headers=headers, content_type=original.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=original.message_id,
        correlation_id=original.correlation_id, type=original.type,
        timestamp=original.timestamp)
    await channel.default_exchange.publish(copy, routing_key=letter.queue, mandatory=True)


async def move_all(channel: AbstractChannel, source: str, target: str) -> int:
    """Every message of `source` to the end of `target`, in order, each confirmed before it is
    acknowledged (so a crash leaves a message in both, never in neither)."""
    moved = 0
    queue = await channel.get_queue(source)
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        copy = aio_pika.Message(
            message.body, headers=dict(message.headers or {}),
            content_type=message.content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id, correlation_id=message.correlation_id,
            type=message.type or message.routing_key, timestamp=message.timestamp)
        await channel.default_exchange.publish(copy, routing_key=target, mandatory=True)
        await message.ack()
        moved += 1
    return moved


async def recreate(channel: AbstractChannel, names: broker_topology.Names, max_length: int) -> int:
    """Declare the dead-letter queue anew with `max_length` (a declare cannot change an existing
    queue's arguments), keeping its messages; returns how many were kept.

    They wait in a queue of their own meanwhile, bound to the dead-letter exchange before the
    old queue is unbound, so a message dead-lettered meanwhile is kept too (in the moment both
    are bound, possibly twice, never not at all).
    """
    dlx = await channel.get_exchange(names.dead_letter)
    aside = await channel.declare_queue(f"{names.dead_letters}.recreating", durable=True,
                                        arguments={"x-queue-type": "quorum"})
    await aside.bind(dlx, routing_key="#")
    old = await channel.get_queue(names.dead_letters)
    await old.unbind(dlx, routing_key="#")
    # Nothing reaches it any more; whatever came in before the unbind is moved too. (A quorum
    # queue cannot be deleted "if empty".) Run again after any failure: what was moved aside so
    # far goes back all the same.
    while await move_all(channel, names.dead_letters, aside.name):
        pass
    await channel.queue_delete(names.dead_letters)
    new = await channel.declare_queue(names.dead_letters, durable=True,
                                      arguments=broker_topology.dead_letter_arguments(max_length))
    await new.bind(dlx, routing_key="#")
    await aside.unbind(dlx, routing_key="#")
    kept = await move_all(channel, aside.name, names.dead_letters)
    await channel.queue_delete(aside.name)
    return kept
