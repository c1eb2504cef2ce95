"""The delivery scheduler: hands due attempts to the dispatcher, never more than an endpoint
may have in flight.

Each round locks the endpoints with due work (FOR UPDATE SKIP LOCKED, so any number of casestore
replicas share them without handing out twice) and, per endpoint, hands out as many attempts as
it has room for: its window (sized from the limit its dispatchers report) minus what is out,
one probe while its circuit is half open, and no more than its `max_per_second` in the current
second. Handed-out attempts leave through the outbox, in the same transaction that marks them
`sending`.
"""

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import structlog

from services.casestore.repo import Conn
from services.casestore.repo import outbox as outbox_rows
from services.casestore.repo import schedule as schedule_rows
from shared.db import listen
from shared.event_payloads import CaseChanged, DeliveryDue
from shared.events import DELIVERY_DUE, new_event
from shared.settings import Settings
from shared.tasks import wait_event

log = structlog.get_logger(__name__)

ENDPOINTS_PER_ROUND = 100


def window(endpoint: asyncpg.Record, settings: Settings) -> int:
    """How many of an endpoint's attempts may be out at once (in flight, or waiting in a
    dispatcher for room under its limit): twice the limit a dispatcher last reported, so the
    hops between attempts never leave that limit idle, and at least endpoint_window; never
    more than twice the automation's ceiling. A paused endpoint gets one probe."""
    if endpoint["state"] in ("open", "half_open"):
        return 1
    ceiling = endpoint["settings"].get("max_in_flight") or settings.endpoint_concurrency
    limit = endpoint["concurrency_limit"] or settings.endpoint_initial_concurrency
    return min(2 * int(ceiling), max(settings.endpoint_window, 2 * int(limit)))


def room(endpoint: asyncpg.Record, settings: Settings) -> tuple[int, int]:
    """(attempts this endpoint may get now, attempts already counted in this second)."""
    request: dict[str, Any] = endpoint["settings"]
    free = window(endpoint, settings) - int(endpoint["in_flight"])
    per_second = request.get("max_per_second")
    counted = 0
    if per_second:
        start = endpoint["window_start"]
        if start is not None and endpoint["now"] - start < timedelta(seconds=1):
            counted = int(endpoint["window_count"])
        free = min(free, int(per_second) - counted)
    return max(0, free), counted


async def hand_out(conn: Conn, endpoint: asyncpg.Record, settings: Settings) -> int:
    """Hand out as many of the endpoint's due attempts as it has room for (its row locked)."""
    free, counted = room(endpoint, settings)
    if free == 0:
        return 0
    automation_id = endpoint["automation_id"]
    if endpoint["state"] == "open":  # its cool-down is over: one probe decides
        await schedule_rows.half_open(conn, automation_id)
    timeout = float(endpoint["settings"].get("timeout", 60))
    due = await schedule_rows.hand_out(conn, automation_id, free,
                                       timeout + settings.delivery_lease_margin_seconds)
    if endpoint["settings"].get("max_per_second") and due:
        start = endpoint["window_start"] if counted else endpoint["now"]
        await schedule_rows.count_in_window(conn, automation_id, start, counted + len(due))
    await outbox_rows.insert_outbox(conn, [_due_event(row, endpoint) for row in due])
    return len(due)


async def hand_out_now(conn: Conn, automation_ids: set[uuid.UUID], settings: Settings) -> int:
    """In the transaction that took deliveries on or settled attempts: hand out what those
    endpoints may send now, so the next attempt needs no scheduler round. An endpoint another
    transaction holds (SKIP LOCKED) is left to that one, or to the scheduler."""
    if not automation_ids:
        return 0
    endpoints = await schedule_rows.lock_due_endpoints(conn, len(automation_ids),
                                                       only=sorted(automation_ids))
    return sum([await hand_out(conn, e, settings) for e in endpoints])


def _due_event(row: asyncpg.Record, endpoint: asyncpg.Record) -> Any:
    """An attempt as the dispatcher gets it: of a case, or an operational event's payload."""
    case = (CaseChanged.model_validate(row["case_snapshot"])
            if row["case_snapshot"] is not None else None)
    due = DeliveryDue(delivery_id=row["id"], automation_id=row["automation_id"],
                      form_id=row["form_id"], form_revision=endpoint["form_revision"],
                      webhook_id=row["webhook_id"], number=row["attempts_made"], case=case,
                      lease_until=row["lease_until"], payload=row["payload"])
    return new_event(DELIVERY_DUE, due, form_id=row["form_id"] or None,
                     case_id=case.case_id if case else None,
                     correlation_id=row["correlation_id"])


class DeliveryScheduler:
    """Hands out what became due with time (a retry's wait over, a lease run out, a circuit's
    cool-down ended) and whatever the consumer's transactions left to it."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self._pool = pool
        self._settings = settings
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()

    async def hand_out_once(self) -> int:
        """One round; returns how many attempts it handed out."""
        async with self._pool.acquire() as conn, conn.transaction():
            endpoints = await schedule_rows.lock_due_endpoints(conn, ENDPOINTS_PER_ROUND)
            return sum([await hand_out(conn, e, self._settings) for e in endpoints])

    def _notified(self, *_: object) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        """Until stopped; NOTIFY wakes it when work may be due, polling covers the rest (a
        retry's time coming, a lease running out, a circuit's cool-down ending)."""
        listener = await listen(self._settings.database_url, schedule_rows.NOTIFY_CHANNEL,
                                self._notified)
        try:
            while not self._stopping.is_set():
                self._wakeup.clear()
                try:
                    handed = await self.hand_out_once()
                except Exception:
                    log.exception("delivery_scheduler_failed")
                    handed = 0
                if handed == 0:
                    await wait_event(self._wakeup, self._settings.delivery_poll_seconds)
        finally:
            if listener is not None:
                await listener.close()
