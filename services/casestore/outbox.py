"""The outbox relay: publishes committed events with confirms, and deletes them if confirmed.

Duplicates are possible (a crash between confirm and delete), loss is not; consumers dedupe.
An event no queue is bound to is logged and dropped: the broker would refuse it on every retry
and hold up every event behind it. Durable work queues are declared by every publisher
(`broker.WORK_QUEUES`), so this only happens to events nobody durably consumes, e.g. form.changed
while no ingest (whose queue lives only while it runs) is up.
"""

import asyncio

import asyncpg
import structlog

from services.casestore import repo
from shared.broker import Publisher
from shared.errors import Unroutable
from shared.settings import Settings
from shared.tasks import wait_event

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "casewire_outbox"


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, publisher: Publisher, settings: Settings):
        self._pool = pool
        self._publisher = publisher
        self._batch = settings.outbox_batch
        self._poll = settings.outbox_poll_seconds
        self._dsn = settings.database_url
        self._wakeup = asyncio.Event()

    async def relay_once(self) -> int:
        """Publish one batch; returns how many events left."""
        async with self._pool.acquire() as conn, conn.transaction():
            # Deleted in this transaction, which commits only after every publish confirmed.
            rows = await repo.take_outbox(conn, self._batch)
            await asyncio.gather(*(self._publish(r) for r in rows))
        return len(rows)

    async def _publish(self, row: asyncpg.Record) -> None:
        try:
            await self._publisher.publish_json(row["body"].encode(), row["routing_key"],
                                               str(row["event_id"]), row["correlation_id"])
        except Unroutable:
            # Expected, not alarming: durable consumers' queues always exist (see above).
            log.info("outbox_event_without_subscriber", routing_key=row["routing_key"],
                     event_id=str(row["event_id"]))

    def _notified(self, *_: object) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until cancelled; NOTIFY wakes it early, polling covers lost notifications."""
        listener = await self._listen()
        try:
            while True:
                # Cleared before reading, so a NOTIFY that lands mid-batch still wakes us.
                self._wakeup.clear()
                try:
                    sent = await self.relay_once()
                except Exception:
                    log.exception("outbox_relay_failed")
                    sent = 0
                    await asyncio.sleep(self._poll)
                if sent >= self._batch:
                    continue
                await wait_event(self._wakeup, self._poll)
        finally:
            if listener is not None:
                await listener.close()

    async def _listen(self) -> asyncpg.Connection | None:
        try:
            conn = await asyncpg.connect(self._dsn)
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
            return conn
        except (OSError, asyncpg.PostgresError):
            log.warning("outbox_listen_unavailable_polling_only")
            return None
