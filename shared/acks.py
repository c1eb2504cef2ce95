"""Coalesced acks: one `basic.ack multiple` for a run of finished messages instead of one each.

Each ack is a command the quorum queue replicates through Raft, so one ack per message is
most of what consuming costs the broker (the figures are in bench/results/history.md).
A message is still acked only after its handler finished (its effect committed): `multiple`
covers a run of delivery tags only when every tag in it is done.

A finished message behind one still in hand (a slow delivery) is acked alone, so a slow message
never holds back the acks of the rest (nor, through the prefetch window, new deliveries).
"""

import asyncio
import bisect
import weakref
from collections import deque
from enum import Enum

from aio_pika.abc import AbstractIncomingMessage

# How long a finished message may wait for its ack: long enough to fold many acks into one,
# short enough that the prefetch window (unacked messages) does not become the limit.
ACK_DELAY = 0.005


class _State(Enum):
    IN_HAND = 1
    FINISHED = 2  # its ack may be folded into a later `multiple`
    SETTLED = 3  # acked, rejected or requeued on its own


class ChannelAcks:
    """The delivery tags of one channel in hand or waiting for an ack, and what became of each."""

    def __init__(self) -> None:
        # Ascending (`multiple` covers every lower tag). A deque: behind one slow message
        # thousands of others may pass, and they leave from the front all at once.
        self._order: deque[int] = deque()
        self._state: dict[int, _State] = {}
        self._finished: dict[int, AbstractIncomingMessage] = {}
        # One flush pending at a time; every message finishing before it goes with it.
        self._next_flush: asyncio.Future[None] | None = None
        # A `multiple` ack must never reach the broker after one covering more.
        self._sending = asyncio.Lock()

    def received(self, message: AbstractIncomingMessage) -> None:
        """Called first thing in a message's task. Those tasks start in delivery order, so no
        lower tag can still be unknown here when a higher one finishes."""
        tag = _tag(message)
        if not self._order or tag > self._order[-1]:
            self._order.append(tag)
        else:  # not seen in practice; kept correct rather than assumed away
            self._order.insert(bisect.bisect(self._order, tag), tag)
        self._state[tag] = _State.IN_HAND

    def settled(self, message: AbstractIncomingMessage) -> None:
        """The message was acked, rejected or requeued on its own."""
        self._state[_tag(message)] = _State.SETTLED

    async def finished(self, message: AbstractIncomingMessage) -> None:
        """Ack the message within ACK_DELAY, together with all that finish meanwhile."""
        tag = _tag(message)
        self._state[tag] = _State.FINISHED
        self._finished[tag] = message
        if self._next_flush is None:
            self._next_flush = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(ACK_DELAY, self._start_flush)
        # Held until the ack is written, so a draining consumer closes no channel before it.
        await asyncio.shield(self._next_flush)

    def _start_flush(self) -> None:
        flushed, self._next_flush = self._next_flush, None
        assert flushed is not None
        # Retrieved here, in case every message waiting on it was cancelled meanwhile.
        flushed.add_done_callback(lambda f: f.cancelled() or f.exception())
        task = asyncio.ensure_future(self._flush())
        task.add_done_callback(lambda done: _settle_future(flushed, done))

    async def _flush(self) -> None:
        async with self._sending:
            await self._send()

    async def _send(self) -> None:
        # Decided before the first await: messages finishing meanwhile wait for the next flush.
        last: AbstractIncomingMessage | None = None
        while self._order and self._state[self._order[0]] is not _State.IN_HAND:
            tag = self._order.popleft()
            if self._state.pop(tag) is _State.FINISHED:
                last = self._finished.pop(tag)
        # Whatever finished now is behind a message still in hand: ack it alone.
        alone = list(self._finished.items())
        self._finished.clear()
        for tag, _ in alone:
            self._state[tag] = _State.SETTLED
        if last is not None:
            await last.ack(multiple=True)
        for _, message in alone:
            await message.ack()


def _settle_future(future: asyncio.Future[None], done: asyncio.Future[None]) -> None:
    if future.done():
        return
    if done.cancelled():
        future.cancel()
    elif (error := done.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(None)


def _tag(message: AbstractIncomingMessage) -> int:
    assert message.delivery_tag is not None  # consumed with acks, so every delivery has one
    return message.delivery_tag


class Acks:
    """ChannelAcks per channel: delivery tags start again on a reopened channel."""

    def __init__(self) -> None:
        self._channels: weakref.WeakKeyDictionary[object, ChannelAcks] = (
            weakref.WeakKeyDictionary())

    def of(self, message: AbstractIncomingMessage) -> ChannelAcks:
        channel = message.channel
        acks = self._channels.get(channel)
        if acks is None:
            acks = self._channels[channel] = ChannelAcks()
        return acks
