"""A queue of the run's own on the cluster, bound to `case.created`: how often each case's event
was published (the outbox's promise is at least once; twice only after a crash between the
broker's confirm and the row's delete). A message the broker hands the tap again (a node lost
before the tap's ack) is not a second publish and is not counted twice."""

from __future__ import annotations

from collections import Counter, defaultdict

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shared import broker_topology
from shared.failover import connect_to_nodes


class EventTap:
    def __init__(self, prefix: str) -> None:
        self.names = broker_topology.Names(prefix)
        self.published: defaultdict[str, Counter[str]] = defaultdict(Counter)  # by form
        self._seen_tags: set[str] = set()
        self._connection: AbstractRobustConnection | None = None

    async def start(self, urls: list[str]) -> None:
        self._connection = await connect_to_nodes(urls, 10)
        channel = await self._connection.channel()
        exchange = await broker_topology.declare_exchanges(channel, self.names)
        queue = await channel.declare_queue(f"{self.names.prefix}.tap", durable=True,
                                            arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, routing_key="case.created")
        await queue.consume(self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        event_id = message.message_id or ""
        if not (message.redelivered and event_id in self._seen_tags):
            self.published[orjson.loads(message.body)["form_id"]][event_id] += 1
        self._seen_tags.add(event_id)
        await message.ack()

    def published_twice(self, form_id: str) -> int:
        return sum(n - 1 for n in self.published[form_id].values() if n > 1)

    async def dead_letters(self) -> int:
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            return (await broker_topology.queue_state(channel, self.names.dead_letters)).ready
        finally:
            await channel.close()

    async def stop(self) -> None:
        if self._connection is not None:
            channel = await self._connection.channel()
            await channel.queue_delete(f"{self.names.prefix}.tap")
            await self._connection.close()

