"""Retention: old rows that only record the past are deleted in small batches, for good.

What goes, and when (CASEWIRE_RETENTION_* settings, in days; 0 keeps a table's rows forever):
`processed_events` (the consumers' deduplication record), delivery attempts, finished
deliveries (with their attempts), parked outbox rows, the audit log's rows, and every
Idempotency-Key record and signed-out console session past its `expires_at`. Any number of
casestore replicas run this at once: each batch locks the rows it deletes with SKIP LOCKED
(repo/retention.py), so they share the work instead of waiting.
"""

import asyncio
import random
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from prometheus_client import Counter

from services.casestore.repo import retention as rows
from shared.settings import Settings
from shared.tasks import wait_event

log = structlog.get_logger(__name__)

PURGED = Counter("casewire_retention_purged_total", "Rows deleted by retention", ["table"])
# Between two batches: the purge yields the database to the real work.
PAUSE_SECONDS = 0.05


def cut_offs(settings: Settings, now: datetime) -> list[tuple[rows.Purge, datetime]]:
    """Each purge and the time before which its rows go; a 0-day setting keeps them all."""
    days = [(rows.PROCESSED_EVENTS, settings.retention_processed_events_days),
            (rows.DELIVERY_ATTEMPTS, settings.retention_delivery_attempts_days),
            (rows.FINISHED_DELIVERIES, settings.retention_deliveries_days),
            (rows.OUTBOX_PARKED, settings.retention_outbox_parked_days),
            (rows.AUDIT_LOG, settings.retention_audit_log_days)]
    plan = [(purge, now - timedelta(days=d)) for purge, d in days if d > 0]
    return [*plan, (rows.IDEMPOTENCY_KEYS, now), (rows.CONSOLE_SESSIONS_ENDED, now)]


class Retention:
    """Purges every `CASEWIRE_RETENTION_INTERVAL_SECONDS`, each table down to its cut-off."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self._stop = asyncio.Event()

    async def purge_table(self, purge: rows.Purge, before: datetime) -> int:
        """Batch after batch until a batch comes back short; rows deleted."""
        total = 0
        while not self._stop.is_set():
            async with self.pool.acquire() as conn:
                deleted = await rows.purge_batch(conn, purge, before,
                                                 self.settings.retention_batch)
            PURGED.labels(purge.table).inc(deleted)
            total += deleted
            if deleted < self.settings.retention_batch:
                break
            await asyncio.sleep(PAUSE_SECONDS)
        return total

    async def purge(self) -> dict[str, int]:
        """One round over every table; rows deleted per table."""
        purged: dict[str, int] = {}
        for purge, before in cut_offs(self.settings, datetime.now(UTC)):
            purged[purge.table] = await self.purge_table(purge, before)
        if any(purged.values()):
            log.info("retention_purged", **purged)
        return purged

    async def run(self) -> None:
        # Replicas started together spread their rounds out.
        interval = self.settings.retention_interval_seconds
        await wait_event(self._stop, random.uniform(0, min(interval, 60)))
        while not self._stop.is_set():
            try:
                await self.purge()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("retention_failed", error=repr(exc))  # the next round tries again
            await wait_event(self._stop, interval)

    def stop(self) -> None:
        self._stop.set()
