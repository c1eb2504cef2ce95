"""Deleting old rows in small batches, safely beside other casestore replicas doing the same.

Each batch locks the rows it takes with FOR UPDATE SKIP LOCKED, so two replicas purging at once
take different rows and neither waits for the other, nor for a transaction using a row.
"""

from dataclasses import dataclass
from datetime import datetime

from services.casestore.repo import Conn


@dataclass(frozen=True)
class Purge:
    """Rows of `table` whose `column` is before the cut-off (and that match `condition`)."""

    table: str
    column: str
    condition: str = "true"

    @property
    def statement(self) -> str:
        # ctid = ANY(ARRAY(...)) is `ctid IN (SELECT ...)` planned as a TID scan.
        return (f"DELETE FROM {self.table} WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM {self.table} WHERE {self.column} < $1 AND {self.condition}"
                f" ORDER BY {self.column} LIMIT $2 FOR UPDATE SKIP LOCKED))")


PROCESSED_EVENTS = Purge("processed_events", "processed_at")
DELIVERY_ATTEMPTS = Purge("delivery_attempts", "started_at")
# Waiting deliveries are work, never purged; a finished one takes its attempts with it.
FINISHED_DELIVERIES = Purge("deliveries", "updated_at", "state IN ('succeeded', 'failed')")
IDEMPOTENCY_KEYS = Purge("idempotency_keys", "expires_at")
OUTBOX_PARKED = Purge("outbox_parked", "parked_at")
AUDIT_LOG = Purge("audit_log", "at")
# A signed-out console session need not be remembered once its cookie has expired anyway.
CONSOLE_SESSIONS_ENDED = Purge("console_sessions_ended", "expires_at")


async def purge_batch(conn: Conn, purge: Purge, before: datetime, limit: int) -> int:
    """Delete up to `limit` rows older than `before`; how many went."""
    status = await conn.execute(purge.statement, before, limit)
    return int(status.split()[-1])
