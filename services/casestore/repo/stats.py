"""Read-only figures for the console: forms at a glance, deliveries per hour, attempt times,
the outbox's backlog."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.casestore.repo import Conn
from shared.db import TypedRow

# Attempts are looked up through their deliveries, found by creation time (indexed): a
# delivery attempted in the window was created at most this long before it (the extended
# schedule spans about 27 hours).
ATTEMPT_LOOKBACK = "2 days"


@dataclass(frozen=True, slots=True)
class FormSummary(TypedRow):
    """A form with how much hangs on it."""

    id: str
    name: str
    field_count: int
    case_count: int
    automation_count: int
    webhook_enabled: bool | None  # None: never enabled


async def form_overview(conn: Conn) -> list[FormSummary]:
    rows = await conn.fetch(
        "SELECT f.id, f.name, jsonb_array_length(f.fields) AS field_count,"
        " (SELECT count(*) FROM cases c WHERE c.form_id = f.id) AS case_count,"
        " (SELECT count(*) FROM automations a WHERE a.form_id = f.id) AS automation_count,"
        " w.enabled AS webhook_enabled"
        " FROM forms f LEFT JOIN incoming_webhooks w ON w.form_id = f.id ORDER BY f.id")
    return [FormSummary.from_record(r) for r in rows]


@dataclass(frozen=True, slots=True)
class AutomationSummary(TypedRow):
    """An automation's name, state and endpoint health, for lists and filters."""

    id: uuid.UUID
    form_id: str
    name: str
    enabled: bool
    disabled_reason: str | None
    health: str  # closed, open or half_open


async def automation_overview(conn: Conn) -> list[AutomationSummary]:
    return await AutomationSummary.fetch(
        conn, "SELECT a.id, a.form_id, a.definition->>'name' AS name, a.enabled, a.disabled_reason,"
        " coalesce(h.state, 'closed') AS health"
        " FROM automations a LEFT JOIN endpoint_health h ON h.automation_id = a.id"
        " ORDER BY a.form_id, a.created_at, a.id")


@dataclass(frozen=True, slots=True)
class HourCount(TypedRow):
    """Deliveries of one automation created in one hour, by how they ended (or not yet)."""

    automation_id: uuid.UUID
    hour: datetime
    succeeded: int
    failed: int
    waiting: int


async def deliveries_per_hour(conn: Conn, since: datetime) -> list[HourCount]:
    """Every (automation, hour) since `since` that had deliveries."""
    rows = await conn.fetch(
        "SELECT automation_id, date_trunc('hour', created_at) AS hour,"
        " count(*) FILTER (WHERE state = 'succeeded') AS succeeded,"
        " count(*) FILTER (WHERE state = 'failed') AS failed,"
        " count(*) FILTER (WHERE state IN ('pending', 'sending', 'retrying')) AS waiting"
        " FROM deliveries WHERE created_at >= $1 GROUP BY 1, 2", since)
    return [HourCount.from_record(r) for r in rows]


@dataclass(frozen=True, slots=True)
class AttemptTimes(TypedRow):
    """An automation's attempts in a window: how many, and the 95th percentile duration."""

    automation_id: uuid.UUID
    attempts: int
    p95_ms: float


async def attempt_times(conn: Conn, since: datetime) -> dict[uuid.UUID, AttemptTimes]:
    rows = await conn.fetch(
        "SELECT d.automation_id, count(*) AS attempts,"
        " percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms) AS p95_ms"
        " FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id"
        f" WHERE d.created_at >= $1::timestamptz - interval '{ATTEMPT_LOOKBACK}'"
        " AND a.started_at >= $1"
        " GROUP BY d.automation_id", since)
    return {r["automation_id"]: AttemptTimes.from_record(r) for r in rows}


@dataclass(frozen=True, slots=True)
class OutboxBacklog(TypedRow):
    """Events not yet published, the oldest one's time, and events the broker refused."""

    waiting: int
    oldest: datetime | None
    parked: int


async def outbox_backlog(conn: Conn) -> OutboxBacklog:
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM outbox) AS waiting,"
        " (SELECT min(created_at) FROM outbox) AS oldest,"
        " (SELECT count(*) FROM outbox_parked) AS parked")
    assert row is not None
    return OutboxBacklog.from_record(row)
