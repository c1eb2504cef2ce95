"""The pipeline on every service's /metrics: queue depths, dead letters, and the scrape itself.

Queue depths come from the broker without its management plugin: a passive declare tells a
queue's ready messages and consumers. It does not tell the messages delivered and not yet
acknowledged, so each service reports those of its own work queue: the deliveries its consumer
holds (shared/consumer.py). A background task reads them every CASEWIRE_PIPELINE_METRICS_SECONDS;
a scrape never waits on the broker.

Several ingest processes on one port (`casewire run` with CASEWIRE_INGEST_WORKERS) share a
PROMETHEUS_MULTIPROC_DIR: each writes its values there and a scrape of any of them adds up all
(prometheus-client's multiprocess mode). Gauges say how they combine: the broker's figures, the
same in every process, as the most recent.
"""

import contextlib
import os
from collections.abc import Callable

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, multiprocess

from shared import broker_topology
from shared.tasks import every

log = structlog.get_logger(__name__)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

QUEUE_READY = Gauge("casewire_queue_messages_ready",
                    "Messages waiting in the queue, not yet delivered (from the broker)",
                    ["queue"], multiprocess_mode="mostrecent")
QUEUE_UNACKED = Gauge("casewire_queue_messages_unacked",
                      "Messages delivered to this process and not yet acknowledged",
                      ["queue"], multiprocess_mode="mostrecent")
QUEUE_CONSUMERS = Gauge("casewire_queue_consumers", "Consumers on the queue (from the broker)",
                        ["queue"], multiprocess_mode="mostrecent")
# What this service decided can never succeed; the broker's own (a message past the delivery
# limit, or pushed out of a full queue) are not seen here: they show in the queue's depth.
DEAD_LETTER_REASONS = ("unparseable", "invalid", "permanent")
DEAD_LETTERS = Counter("casewire_dead_letters_total",
                       "Messages this process sent to the dead letters, by reason", ["reason"])
for _reason in DEAD_LETTER_REASONS:
    DEAD_LETTERS.labels(_reason)

# Per work queue this process consumes, the deliveries its consumer holds now.
InHand = Callable[[], dict[str, int]]


async def _read_queue(connection: AbstractRobustConnection, channel: AbstractChannel | None,
                      queue: str) -> AbstractChannel | None:
    """Set one queue's gauges; returns the channel to go on with (None once the broker closed
    it: a queue not declared yet)."""
    channel = channel or await connection.channel(publisher_confirms=False)
    try:
        state = await broker_topology.queue_state(channel, queue)
    except aio_pika.exceptions.ChannelClosed:
        with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError, OSError):
            await channel.close()  # or the robust channel would reopen itself
        return None
    QUEUE_READY.labels(queue).set(state.ready)
    QUEUE_CONSUMERS.labels(queue).set(state.consumers)
    return channel


async def read_queues(connection: AbstractRobustConnection, names: broker_topology.Names,
                      in_hand: InHand) -> None:
    """Set every queue's gauges once. The dead letters have no consumer in Casewire: nothing
    holds them unacknowledged (but a `casewire dead-letters` command, for the moment it runs)."""
    channel: AbstractChannel | None = None
    try:
        for queue in broker_topology.all_queues(names):
            channel = await _read_queue(connection, channel, queue)
    finally:
        if channel is not None:
            with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError, OSError):
                await channel.close()
    QUEUE_UNACKED.labels(names.dead_letters).set(0)
    for queue, count in in_hand().items():
        QUEUE_UNACKED.labels(queue).set(count)


async def read_queues_forever(connection: AbstractRobustConnection, names: broker_topology.Names,
                              in_hand: InHand, seconds: float) -> None:
    # While the broker is away the gauges keep their last values (its absence shows in
    # /readyz and in the ingest outcomes).
    await every(seconds, lambda: read_queues(connection, names, in_hand), "queue_metrics_not_read")


def exposition() -> bytes:
    """The /metrics body: this process's metrics, or all ingest processes' in multiprocess mode."""
    if os.environ.get(MULTIPROC_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))
    return bytes(generate_latest())
