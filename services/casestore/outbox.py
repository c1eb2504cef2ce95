"""Publishing the outbox: committed events go out with confirms, and are deleted if confirmed.

The events of the consumer's transactions are published by `PublishAtCommit` as each commits;
the relay publishes every other row, and any row that publish left behind.

Duplicates are possible (a crash between confirm and commit), loss is not; consumers dedupe.
A row a publish at commit was given first may have gone out already when the relay takes it
(the delete after its confirm failed: a database crash, casestore killed): the relay publishes
it marked as a possible repeat (broker.MAYBE_REPEAT), which consumers treat as a redelivery, so
no shortcut meant for a first delivery is taken on it.
Each row of a batch settles on its own: confirmed rows are deleted, rows the broker could not
take now (an outage) stay for the next round, and a row that can never be published (a property
the broker refuses) is parked in `outbox_parked` with its error, so it can neither hold up the
rows behind it nor make them go out again on every retry.

An event no queue is bound to is logged and dropped: durable work queues are declared by every
publisher (`broker_topology.WORK_QUEUES`), so this only happens to events nobody durably
consumes, e.g. form.changed while no ingest (whose queue lives only while it runs) is up.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum

import asyncpg
import orjson
import structlog
from prometheus_client import Counter, Gauge

from services.casestore import operational
from services.casestore.repo import Conn
from services.casestore.repo import outbox as outbox_rows
from services.casestore.repo.outbox import NOTIFY_CHANNEL
from shared.broker import Publisher
from shared.db import listen
from shared.errors import DependencyUnavailable, Unroutable
from shared.events import DELIVERY_DUE
from shared.settings import Settings
from shared.tasks import every, wait_event

log = structlog.get_logger(__name__)

OUTBOX_PARKED = Counter("casewire_outbox_parked_total",
                        "Outbox events the broker refused for good, parked in outbox_parked")
PUBLISHED_AT_COMMIT = Counter("casewire_outbox_published_at_commit_total",
                              "Outbox events casestore published as their transaction "
                              "committed, without the relay")
# Rows published at commit that may wait in memory; beyond, the relay takes them.
MOST_WAITING = 10_000
# Published rows are deleted together at most this often: one statement for all the events of
# a busy second's fraction instead of one per transaction. Far within the relay's grace.
DELETE_EVERY = 0.2
OUTBOX_WAITING = Gauge("casewire_outbox_waiting", "Outbox rows not yet published",
                       multiprocess_mode="mostrecent")
OUTBOX_OLDEST = Gauge("casewire_outbox_oldest_seconds",
                      "Age of the oldest outbox row not yet published (0 when none wait)",
                      multiprocess_mode="mostrecent")


class Outcome(Enum):
    SENT = 1  # confirmed, or dropped as unroutable: delete the row
    LATER = 2  # the broker is unavailable: keep the row


@dataclass(frozen=True)
class Parked:
    """The row can never be published: it is moved aside with this error."""

    error: str


async def publish_row(publisher: Publisher, row: outbox_rows.OutboxRow) -> Outcome | Parked:
    try:
        await publisher.publish_json(row.body.encode(), row.routing_key, str(row.event_id),
                                     row.correlation_id, maybe_repeat=row.maybe_published)
    except Unroutable:
        # Expected, not alarming: durable consumers' queues always exist (see above).
        log.info("outbox_event_without_subscriber", routing_key=row.routing_key,
                 event_id=str(row.event_id))
    except DependencyUnavailable:
        return Outcome.LATER
    except Exception as exc:
        return Parked(repr(exc))
    return Outcome.SENT


class PublishAtCommit:
    """Publishes a transaction's outbox events as soon as it commits (`transaction`), where
    the relay would wait for a NOTIFY and take them in a transaction of its own: one statement
    per batch instead of three, and no wake-up of the relay.

    The outbox stays the safety net: these rows are written for the relay to take only after
    a grace, longer than publishing them here can take, so it takes only what this never
    published (a crash). A row the broker did not take is handed to the relay at once.
    """

    def __init__(self, pool: asyncpg.Pool, publisher: Publisher, settings: Settings):
        self._pool = pool
        self._publisher = publisher
        # A publish waits for its confirm at most publish_timeout, the delete comes after it.
        self._grace = 2 * settings.publish_timeout + 5
        self._rows: list[outbox_rows.OutboxRow] = []
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()

    @contextlib.asynccontextmanager
    async def transaction(self, conn: Conn) -> AsyncIterator[None]:
        """A transaction whose outbox events are published once it commits."""
        at_commit = outbox_rows.AtCommit(self._grace, [])
        token = outbox_rows.AT_COMMIT.set(at_commit)
        try:
            async with conn.transaction():
                yield
        finally:
            outbox_rows.AT_COMMIT.reset(token)
        # Beyond this many waiting (a slow broker), the relay takes them after the grace.
        if at_commit.rows and len(self._rows) < MOST_WAITING:
            self._rows.extend(at_commit.rows)
            self._wakeup.set()

    def stop(self) -> None:
        """End once the rows in hand are published and settled."""
        self._stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        """Publish rows as they come; delete the published ones every DELETE_EVERY, and hand
        the relay those the broker did not take at once."""
        loop = asyncio.get_running_loop()
        sent: list[int] = []
        delete_at = 0.0
        while self._rows or sent or not self._stopping.is_set():
            if sent:
                await wait_event(self._wakeup, delete_at - loop.time())
            else:
                await self._wakeup.wait()
            self._wakeup.clear()
            rows, self._rows = self._rows, []
            if rows:
                if not sent:
                    delete_at = loop.time() + DELETE_EVERY
                published, left = await self._publish(rows)
                sent.extend(published)
                if left:
                    await self._settle([], left)
            if sent and (loop.time() >= delete_at or self._stopping.is_set()):
                await self._settle(sent, [])
                sent = []

    async def _publish(self, rows: list[outbox_rows.OutboxRow]) -> tuple[list[int], list[int]]:
        """The ids of the rows published, and of those the broker did not take."""
        outcomes = await asyncio.gather(*(publish_row(self._publisher, r) for r in rows))
        sent = [r.id for r, o in zip(rows, outcomes, strict=True) if o is Outcome.SENT]
        PUBLISHED_AT_COMMIT.inc(len(sent))
        return sent, [r.id for r, o in zip(rows, outcomes, strict=True) if o is not Outcome.SENT]

    async def _settle(self, sent: list[int], left: list[int]) -> None:
        try:
            async with self._pool.acquire() as conn:
                await outbox_rows.settle_at_commit(conn, sent, left)
        except Exception as exc:
            # An outage, or anything else: this loop must go on. The relay publishes the rows
            # again after the grace; consumers deduplicate.
            log.warning("outbox_rows_left_to_relay", count=len(sent) + len(left),
                        error=repr(exc))


def _automation_of(row: outbox_rows.OutboxRow) -> uuid.UUID | None:
    """The automation a parked attempt was of: the operational webhook's own are not told of
    (services/casestore/operational.py)."""
    if row.routing_key != DELIVERY_DUE:
        return None
    try:
        return uuid.UUID(orjson.loads(row.body)["data"]["automation_id"])
    except (ValueError, KeyError, TypeError):
        return None


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, publisher: Publisher, settings: Settings):
        self._pool = pool
        self._publisher = publisher
        self._batch = settings.outbox_batch
        self._poll = settings.outbox_poll_seconds
        self._dsn = settings.database_url
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()

    async def relay_once(self) -> tuple[int, bool]:
        """Publish one batch; returns how many rows it held and whether the broker was there."""
        async with self._pool.acquire() as conn, conn.transaction():
            # Deleted in this transaction, which commits only after every publish settled.
            rows = await outbox_rows.take_outbox(conn, self._batch)
            outcomes = await asyncio.gather(*(self._publish(r) for r in rows))
            later = [r for r, o in zip(rows, outcomes, strict=True) if o is Outcome.LATER]
            parked = [(r, o.error) for r, o in zip(rows, outcomes, strict=True)
                      if isinstance(o, Parked)]
            if later:
                await outbox_rows.restore_outbox(conn, later)
            if parked:
                await outbox_rows.park_outbox(conn, parked)
                for row, error in parked:
                    await operational.emit(conn, "outbox.parked", {
                        "event_id": str(row.event_id), "routing_key": row.routing_key,
                        "error": error}, about=_automation_of(row))
        return len(rows), not later

    async def _publish(self, row: outbox_rows.OutboxRow) -> Outcome | Parked:
        outcome = await publish_row(self._publisher, row)
        if isinstance(outcome, Parked):
            OUTBOX_PARKED.inc()
            log.warning("outbox_event_parked", event_id=str(row.event_id),
                        routing_key=row.routing_key, error=outcome.error)
        return outcome

    def _notified(self, *_: object) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        """End after the batch in hand: a batch cut short would be published, then rolled back
        and published again after the restart."""
        self._stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until stopped; NOTIFY wakes it early, polling covers lost notifications."""
        listener = await listen(self._dsn, NOTIFY_CHANNEL, self._notified)
        try:
            while not self._stopping.is_set():
                # Cleared before reading, so a NOTIFY that lands mid-batch still wakes us.
                self._wakeup.clear()
                try:
                    taken, broker_up = await self.relay_once()
                except Exception:
                    log.exception("outbox_relay_failed")
                    taken, broker_up = 0, False
                if not broker_up:
                    # Not wait_event: putting rows back NOTIFYs, which would wake us at once.
                    await wait_event(self._stopping, self._poll)
                elif taken < self._batch:
                    await wait_event(self._wakeup, self._poll)
        finally:
            if listener is not None:
                await listener.close()


async def read_backlog(pool: asyncpg.Pool) -> None:
    """Set the outbox gauges (the whole table's: every casestore reports the same)."""
    async with pool.acquire() as conn:
        waiting, oldest = await outbox_rows.outbox_backlog(conn)
    OUTBOX_WAITING.set(waiting)
    OUTBOX_OLDEST.set(oldest)


async def read_backlog_forever(pool: asyncpg.Pool, seconds: float) -> None:
    # Through a database outage the gauges keep their last values.
    await every(seconds, lambda: read_backlog(pool), "outbox_metrics_not_read")
