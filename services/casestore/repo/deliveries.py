"""The delivery log: deliveries of outgoing webhooks and their attempts."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import asyncpg

from services.casestore.repo import Conn
from shared.events import DeliveryRecorded

DELIVERY_SUMMARY = (
    "SELECT d.id, d.automation_id, d.case_id, d.form_id, d.event_id, d.webhook_id, d.state,"
    " d.created_at, d.updated_at, coalesce(s.attempt_count, 0) AS attempt_count,"
    " last.response_status AS last_response_status, last.error AS last_error"
    " FROM deliveries d"
    " LEFT JOIN LATERAL (SELECT count(*) AS attempt_count FROM delivery_attempts"
    "   WHERE delivery_id = d.id) s ON true"
    " LEFT JOIN LATERAL (SELECT response_status, error FROM delivery_attempts"
    "   WHERE delivery_id = d.id ORDER BY started_at DESC, number DESC LIMIT 1) last ON true")


ATTEMPT_COLUMNS = ("id, number, started_at, duration_ms, request, response_status,"
                   " response_headers, response_body, error")


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A delivery with a summary of its attempts (the columns of DELIVERY_SUMMARY)."""

    id: uuid.UUID
    automation_id: uuid.UUID
    case_id: uuid.UUID
    form_id: str
    event_id: uuid.UUID
    webhook_id: str
    state: str
    created_at: datetime
    updated_at: datetime
    attempt_count: int
    last_response_status: int | None
    last_error: str | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(**record)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "automation_id": str(self.automation_id),
            "case_id": str(self.case_id), "form_id": self.form_id,
            "event_id": str(self.event_id), "webhook_id": self.webhook_id, "state": self.state,
            "attempt_count": self.attempt_count,
            "last_response_status": self.last_response_status, "last_error": self.last_error,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One attempt of a delivery, as the dispatcher recorded it (the ATTEMPT_COLUMNS)."""

    id: uuid.UUID
    number: int
    started_at: datetime
    duration_ms: float
    request: dict[str, Any]
    response_status: int | None
    response_headers: dict[str, Any]
    response_body: str | None
    error: str | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(**record)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "number": self.number, "started_at": self.started_at.isoformat(),
            "duration_ms": self.duration_ms, "request": self.request,
            "response_status": self.response_status, "response_headers": self.response_headers,
            "response_body": self.response_body, "error": self.error,
        }


def _replace_nul(value: Any) -> Any:
    """Postgres text and jsonb cannot hold U+0000, but a receiver's binary answer may: each
    one becomes U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_replace_nul(k): _replace_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_nul(v) for v in value]
    return value


RECORD_DELIVERY = (
    # One statement, one round trip: the delivery and its new attempts, if the automation is
    # still there (deleting an automation deletes its log, and a late record is dropped).
    "WITH automation AS (SELECT 1 FROM automations WHERE id = $2 FOR KEY SHARE),"
    " delivery AS (INSERT INTO deliveries"
    "   (id, automation_id, case_id, form_id, event_id, webhook_id, state)"
    "   SELECT $1, $2, $3, $4, $5, $6, $7 FROM automation"
    "   ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()"
    # A record that arrives after a newer one (of a replay) must not turn the state back.
    "   WHERE $8::timestamptz IS NULL OR NOT EXISTS (SELECT 1 FROM delivery_attempts a"
    "     WHERE a.delivery_id = EXCLUDED.id AND a.started_at > $8)),"
    " attempts AS (INSERT INTO delivery_attempts (id, delivery_id, number, started_at,"
    "   duration_ms, request, response_status, response_headers, response_body, error)"
    "   SELECT a.id, $1, a.number, a.started_at, a.duration_ms, a.request, a.response_status,"
    "     a.response_headers, a.response_body, a.error"
    "   FROM unnest($9::uuid[], $10::int[], $11::timestamptz[], $12::float8[], $13::jsonb[],"
    "     $14::int[], $15::jsonb[], $16::text[], $17::text[])"
    "     AS a(id, number, started_at, duration_ms, request, response_status,"
    "          response_headers, response_body, error)"
    "   WHERE EXISTS (SELECT 1 FROM automation)"
    "   ON CONFLICT (id) DO NOTHING)"
    " SELECT EXISTS (SELECT 1 FROM automation)")


async def record_delivery(conn: Conn, record: DeliveryRecorded) -> bool:
    """Upsert the delivery and add its new attempts; False if its automation no longer exists."""
    newest = max((a.started_at for a in record.attempts), default=None)
    attempts = [(a.id, a.number, a.started_at, a.duration_ms,
                 _replace_nul(a.request.model_dump(mode="json")), a.response_status,
                 _replace_nul(a.response_headers), _replace_nul(a.response_body),
                 _replace_nul(a.error))
                for a in record.attempts]
    columns = [list(c) for c in zip(*attempts, strict=True)] if attempts else [[]] * 9
    return bool(await conn.fetchval(
        RECORD_DELIVERY, record.delivery_id, record.automation_id, record.case_id,
        record.form_id, record.event_id, record.webhook_id, record.state, newest, *columns))


async def list_deliveries(conn: Conn, *, automation_id: uuid.UUID | None,
                          case_id: uuid.UUID | None, state: str | None, limit: int,
                          before: DeliveryRow | None) -> list[DeliveryRow]:
    """Newest first; `before` is the previous page's last delivery."""
    created, last_id = (before.created_at, before.id) if before else (None, None)
    rows = await conn.fetch(
        f"{DELIVERY_SUMMARY} WHERE ($1::uuid IS NULL OR d.automation_id = $1)"
        " AND ($2::uuid IS NULL OR d.case_id = $2) AND ($3::text IS NULL OR d.state = $3)"
        " AND ($4::timestamptz IS NULL OR (d.created_at, d.id) < ($4, $5::uuid))"
        " ORDER BY d.created_at DESC, d.id DESC LIMIT $6",
        automation_id, case_id, state, created, last_id, limit)
    return [DeliveryRow.from_record(r) for r in rows]


async def get_delivery(conn: Conn, delivery_id: uuid.UUID) -> DeliveryRow | None:
    row = await conn.fetchrow(f"{DELIVERY_SUMMARY} WHERE d.id = $1", delivery_id)
    return DeliveryRow.from_record(row) if row else None


async def delivery_attempts(conn: Conn, delivery_id: uuid.UUID) -> list[AttemptRow]:
    rows = await conn.fetch(
        f"SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts"
        " WHERE delivery_id = $1 ORDER BY started_at, number", delivery_id)
    return [AttemptRow.from_record(r) for r in rows]
