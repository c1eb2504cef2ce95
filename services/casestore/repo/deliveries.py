"""The delivery log: deliveries of outgoing webhooks, waiting or finished, and their attempts."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.casestore.repo import Conn

# The search's filter lives beside the queries that take it; its names are re-exported.
from services.casestore.repo.delivery_filter import DeliveryFilter as DeliveryFilter
from services.casestore.repo.delivery_filter import StatusRange as StatusRange
from services.casestore.repo.delivery_filter import status_filter as status_filter
from services.casestore.repo.delivery_filter import webhook_id_filter as webhook_id_filter
from shared.db import TypedRow
from shared.event_payloads import Attempt
from shared.schedule import EXTENDED_ATTEMPTS

DELIVERY_SUMMARY = (
    "SELECT d.id, d.automation_id, d.automation_name, d.case_id, d.form_id, d.event_id,"
    " d.webhook_id, d.state, d.schedule, d.attempts_allowed, d.next_attempt_at,"
    " d.created_at, d.updated_at, coalesce(s.attempt_count, 0) AS attempt_count,"
    " last.response_status AS last_response_status, last.error AS last_error,"
    " a.id IS NULL AS automation_deleted, a.enabled AS automation_enabled,"
    " a.disabled_reason, h.state AS circuit, h.open_until"
    " FROM deliveries d"
    " LEFT JOIN automations a ON a.id = d.automation_id"
    " LEFT JOIN endpoint_health h ON h.automation_id = d.automation_id"
    " LEFT JOIN LATERAL (SELECT count(*) AS attempt_count FROM delivery_attempts"
    "   WHERE delivery_id = d.id) s ON true"
    " LEFT JOIN LATERAL (SELECT response_status, error FROM delivery_attempts"
    "   WHERE delivery_id = d.id ORDER BY started_at DESC, number DESC LIMIT 1) last ON true")


WAITING = ("pending", "sending", "retrying")
ATTEMPT_COLUMNS = ("id, number, started_at, duration_ms, request, response_status,"
                   " response_headers, response_body, error")


@dataclass(frozen=True, slots=True)
class DeliveryRow(TypedRow):
    """A delivery with a summary of its attempts (the columns of DELIVERY_SUMMARY)."""

    id: uuid.UUID
    automation_id: uuid.UUID
    automation_name: str
    case_id: uuid.UUID | None  # None: an operational event's, of no case
    form_id: str
    event_id: uuid.UUID
    webhook_id: str
    state: str
    schedule: str
    attempts_allowed: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    attempt_count: int
    last_response_status: int | None
    last_error: str | None
    automation_deleted: bool
    automation_enabled: bool | None
    disabled_reason: str | None
    circuit: str | None
    open_until: datetime | None

    @property
    def held(self) -> str | None:
        """Why a waiting delivery is not sent when due, if something holds it."""
        if not self.waiting:
            return None
        if self.automation_deleted:
            return None  # deleting an automation fails what waited: not reached
        if not self.automation_enabled:
            return f"its automation is disabled ({self.disabled_reason or 'no reason given'})"
        if self.circuit == "open" and self.open_until is not None:
            return (f"its endpoint is paused after failing, until {self.open_until.isoformat()}"
                    " (then one probe)")
        if self.circuit == "half_open":
            return "its endpoint is paused after failing, until a probe succeeds"
        return None

    @property
    def waiting(self) -> bool:
        """On its way: not yet tried, an attempt out, or waiting for the next one."""
        return self.state in WAITING

    def to_api(self) -> dict[str, Any]:
        next_at = self.next_attempt_at if self.waiting else None
        return {
            "id": str(self.id), "automation_id": str(self.automation_id),
            "automation_name": self.automation_name,
            "case_id": str(self.case_id) if self.case_id else None, "form_id": self.form_id,
            "event_id": str(self.event_id), "webhook_id": self.webhook_id, "state": self.state,
            "schedule": self.schedule, "attempt_count": self.attempt_count,
            "attempts_allowed": self.attempts_allowed,
            "next_attempt_at": next_at.isoformat() if next_at else None,
            "last_response_status": self.last_response_status, "last_error": self.last_error,
            "held": self.held,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class AttemptRow(TypedRow):
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

    def response_cut(self, excerpt_bytes: int) -> bool:
        """Whether the answer filled the excerpt the dispatcher keeps (its first
        CASEWIRE_RESPONSE_EXCERPT_BYTES bytes), so what came after, if anything, is not kept.

        Read from the excerpt itself: its bytes undecodable as UTF-8 were kept as U+FFFD, so
        an answer that is UTF-8 text is judged exactly (one cut inside a character still
        fills it), while one that is not may be judged full below the limit."""
        return self.response_body is not None and len(
            self.response_body.encode("utf-8", "surrogatepass")) >= excerpt_bytes

    def to_api(self, excerpt_bytes: int) -> dict[str, Any]:
        return {
            "id": str(self.id), "number": self.number, "started_at": self.started_at.isoformat(),
            "duration_ms": self.duration_ms, "request": self.request,
            "response_status": self.response_status, "response_headers": self.response_headers,
            "response_body": self.response_body,
            "response_body_cut": self.response_cut(excerpt_bytes), "error": self.error,
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


NewAttempt = tuple[uuid.UUID, Attempt]  # (delivery id, attempt)
ATTEMPT_TYPES = ("uuid", "uuid", "int", "timestamptz", "float8", "jsonb", "int", "jsonb", "text",
                 "text")


def attempt_columns(attempts: list[NewAttempt]) -> list[list[Any]]:
    """The parameters of `insert_attempts_sql`: one list per column."""
    rows = [(delivery_id, a.id, a.number, a.started_at, a.duration_ms,
             _replace_nul(a.request.model_dump(mode="json")), a.response_status,
             _replace_nul(a.response_headers), _replace_nul(a.response_body),
             _replace_nul(a.error)) for delivery_id, a in attempts]
    return [list(column) for column in zip(*rows, strict=True)]


def insert_attempts_sql(first: int, new_deliveries: str | None = None) -> str:
    """Adding the attempts of parameters $first.. (`attempt_columns`), returning the ids of
    those not there already. An attempt of a delivery that does not exist is not added; one of
    a delivery the same statement inserts counts if its ids are the CTE `new_deliveries`."""
    arrays = ", ".join(f"${first + n}::{t}[]" for n, t in enumerate(ATTEMPT_TYPES))
    exists = "EXISTS (SELECT 1 FROM deliveries d WHERE d.id = a.delivery_id)"
    if new_deliveries is not None:
        exists = f"(a.delivery_id IN (SELECT id FROM {new_deliveries}) OR {exists})"
    return ("INSERT INTO delivery_attempts (id, delivery_id, number, started_at, duration_ms,"
            " request, response_status, response_headers, response_body, error)"
            " SELECT a.id, a.delivery_id, a.number, a.started_at, a.duration_ms, a.request,"
            " a.response_status, a.response_headers, a.response_body, a.error"
            f" FROM unnest({arrays}) AS a(delivery_id, id, number, started_at, duration_ms,"
            " request, response_status, response_headers, response_body, error)"
            f" WHERE {exists} ON CONFLICT (id) DO NOTHING RETURNING id")


async def missing(conn: Conn, delivery_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Those of the deliveries that do not exist (or not yet, for this transaction)."""
    found = await conn.fetch("SELECT id FROM deliveries WHERE id = ANY($1::uuid[])",
                             delivery_ids)
    return set(delivery_ids) - {row["id"] for row in found}


async def insert_attempts(conn: Conn, attempts: list[NewAttempt]) -> set[uuid.UUID]:
    """Add attempts to their deliveries' logs in one statement; the ids of those that were not
    there already (an attempt of a delivery that no longer exists is not added)."""
    if not attempts:
        return set()
    inserted = await conn.fetch(insert_attempts_sql(1), *attempt_columns(attempts))
    return {row["id"] for row in inserted}


async def list_deliveries(conn: Conn, where: DeliveryFilter, *, limit: int,
                          before: DeliveryRow | None) -> list[DeliveryRow]:
    """Newest first; `before` is the previous page's last delivery."""
    args: list[Any] = []
    condition = where.where(args)
    if before is not None:
        args += [before.created_at, before.id]
        condition += f" AND (d.created_at, d.id) < (${len(args) - 1}, ${len(args)}::uuid)"
    args.append(limit)
    return await DeliveryRow.fetch(
        conn, f"{DELIVERY_SUMMARY} WHERE {condition}"
        f" ORDER BY d.created_at DESC, d.id DESC LIMIT ${len(args)}", *args)


async def replay_deliveries(conn: Conn, where: DeliveryFilter) -> int:
    """Finished deliveries due again now, as they were first sent, each with its configured
    attempts once more (the numbering continues); waiting ones are on their way already."""
    args: list[Any] = [EXTENDED_ATTEMPTS]
    condition = where.where(args)
    result = await conn.execute(
        "UPDATE deliveries d SET state = 'pending', next_attempt_at = now(), lease_until = NULL,"
        " updated_at = now(),"
        " attempts_allowed = d.attempts_made + CASE WHEN d.schedule = 'extended' THEN $1::int"
        "   ELSE coalesce((a.definition->'action'->'settings'->>'attempts')::int, 1) END"
        f" FROM automations a WHERE a.id = d.automation_id AND {condition}"
        " AND d.state IN ('succeeded', 'failed')", *args)
    return int(result.split()[-1])


async def fail_waiting_deliveries_of_form(conn: Conn, form_id: str) -> None:
    """Its form is gone, and with it every automation: what still waited will never be sent."""
    await conn.execute(
        "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, lease_until = NULL,"
        " updated_at = now() WHERE form_id = $1"
        " AND state IN ('pending', 'sending', 'retrying')", form_id)


async def fail_waiting_deliveries(conn: Conn, automation_id: uuid.UUID) -> None:
    """Its automation is gone: what still waited will never be sent."""
    await conn.execute(
        "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, lease_until = NULL,"
        " updated_at = now() WHERE automation_id = $1"
        " AND state IN ('pending', 'sending', 'retrying')", automation_id)


async def succeeded_lately(conn: Conn, automation_id: uuid.UUID, seconds: float) -> int:
    """The automation's deliveries that succeeded in the last `seconds`."""
    return int(await conn.fetchval(
        "SELECT count(*) FROM deliveries WHERE automation_id = $1 AND state = 'succeeded'"
        " AND updated_at > now() - make_interval(secs => $2)", automation_id, seconds))


async def get_delivery(conn: Conn, delivery_id: uuid.UUID) -> DeliveryRow | None:
    return await DeliveryRow.fetch_one(
        conn, f"{DELIVERY_SUMMARY} WHERE d.id = $1", delivery_id)


async def delivery_attempts(conn: Conn, delivery_id: uuid.UUID) -> list[AttemptRow]:
    return await AttemptRow.fetch(
        conn, f"SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts"
        " WHERE delivery_id = $1 ORDER BY started_at, number", delivery_id)
