"""Timers of time-based triggers, one per (automation, case, trigger), and their rebuilds."""

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self

import asyncpg

from services.casestore.repo import Conn
from shared.cases import CASE_COLUMNS
from shared.db import TypedRow

TimerKey = tuple[uuid.UUID, uuid.UUID, int]  # automation, case, trigger index


@dataclass(frozen=True, slots=True)
class TimerRow(TypedRow):
    id: int
    automation_id: uuid.UUID
    case_id: uuid.UUID
    trigger_index: int
    due_at: datetime
    occurrence: int

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(**{f.name: record[f.name] for f in fields(cls)})

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "automation_id": str(self.automation_id),
                "case_id": str(self.case_id),
                "trigger_index": self.trigger_index, "due_at": self.due_at.isoformat(),
                "occurrence": self.occurrence}


TIMER_COLUMNS = "t.id, t.automation_id, t.case_id, t.trigger_index, t.due_at, t.occurrence"


async def set_timers(conn: Conn, timers: list[tuple[TimerKey, datetime, int]]) -> None:
    """Create or move timers: ((automation, case, trigger index), due at, occurrence)."""
    if not timers:
        return
    await conn.execute(
        "INSERT INTO timers (automation_id, case_id, trigger_index, due_at, occurrence)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::timestamptz[], $5::int[])"
        " ON CONFLICT (automation_id, case_id, trigger_index) DO UPDATE"
        " SET due_at = EXCLUDED.due_at, occurrence = EXCLUDED.occurrence",
        [k[0] for k, _, _ in timers], [k[1] for k, _, _ in timers],
        [k[2] for k, _, _ in timers], [d for _, d, _ in timers], [o for _, _, o in timers])


async def remove_timers(conn: Conn, keys: list[TimerKey]) -> None:
    if keys:
        await conn.execute(
            "DELETE FROM timers t USING unnest($1::uuid[], $2::uuid[], $3::int[])"
            " AS k(a, c, i) WHERE t.automation_id = k.a AND t.case_id = k.c"
            " AND t.trigger_index = k.i",
            [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])


async def remove_automation_timers(conn: Conn, automation_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM timers WHERE automation_id = $1", automation_id)


async def existing(conn: Conn, case_id: uuid.UUID) -> dict[tuple[uuid.UUID, int], TimerRow]:
    rows = await conn.fetch(f"SELECT {TIMER_COLUMNS} FROM timers t WHERE t.case_id = $1",
                            case_id)
    return {(r["automation_id"], r["trigger_index"]): TimerRow.from_record(r) for r in rows}


async def take_due(conn: Conn, limit: int) -> list[asyncpg.Record]:
    """The earliest due timers, locked (SKIP LOCKED: replicas share them), each with its case,
    its automation's definition and its form's time zone and revision."""
    return list(await conn.fetch(
        f"WITH due AS (SELECT {TIMER_COLUMNS} FROM timers t WHERE t.due_at <= now()"
        "   ORDER BY t.due_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " SELECT due.*, a.definition, a.enabled, f.time_zone, f.revision AS form_revision,"
        f" {', '.join(f'c.{c} AS case_{c}' for c in CASE_COLUMNS.split(', '))},"
        " now() AS now"
        " FROM due JOIN automations a ON a.id = due.automation_id"
        " JOIN cases c ON c.id = due.case_id JOIN forms f ON f.id = c.form_id"
        " ORDER BY due.due_at", limit))


async def list_timers(conn: Conn, *, case_id: uuid.UUID | None = None,
                      automation_id: uuid.UUID | None = None, limit: int = 100,
                      after: tuple[datetime, int] | None = None) -> list[TimerRow]:
    """Soonest first; `after` is the (due_at, id) of the previous page's last timer."""
    due, last_id = after if after else (None, None)
    rows = await conn.fetch(
        f"SELECT {TIMER_COLUMNS} FROM timers t"
        " WHERE ($1::uuid IS NULL OR t.case_id = $1) AND ($2::uuid IS NULL OR t.automation_id = $2)"
        " AND ($3::timestamptz IS NULL OR (t.due_at, t.id) > ($3, $4::bigint))"
        " ORDER BY t.due_at, t.id LIMIT $5", case_id, automation_id, due, last_id, limit)
    return [TimerRow.from_record(r) for r in rows]


async def get_timer(conn: Conn, timer_id: int) -> TimerRow | None:
    return await TimerRow.fetch_one(
        conn, f"SELECT {TIMER_COLUMNS} FROM timers t WHERE t.id = $1", timer_id)


async def request_rebuild(conn: Conn, automation_id: uuid.UUID) -> None:
    """Compute the automation's timers for every existing case again (in batches, later)."""
    await remove_automation_timers(conn, automation_id)
    await conn.execute(
        "INSERT INTO timer_rebuilds (automation_id) VALUES ($1) ON CONFLICT (automation_id)"
        " DO UPDATE SET after_number = 0, requested_at = now()", automation_id)


async def cancel_rebuild(conn: Conn, automation_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM timer_rebuilds WHERE automation_id = $1", automation_id)


async def take_rebuild(conn: Conn) -> asyncpg.Record | None:
    """One pending rebuild, locked, with its automation and form."""
    return await conn.fetchrow(
        "SELECT r.automation_id, r.after_number, a.definition, a.form_id"
        " FROM timer_rebuilds r JOIN automations a ON a.id = r.automation_id"
        " ORDER BY r.requested_at LIMIT 1 FOR UPDATE OF r SKIP LOCKED")


async def cases_after(conn: Conn, form_id: str, after_number: int,
                      limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        f"SELECT {CASE_COLUMNS} FROM cases WHERE form_id = $1 AND case_number > $2"
        " AND NOT skip_triggers ORDER BY case_number LIMIT $3", form_id, after_number, limit))


async def advance_rebuild(conn: Conn, automation_id: uuid.UUID, after_number: int | None) -> None:
    """Move the rebuild on past `after_number`; None: it is done."""
    if after_number is None:
        await cancel_rebuild(conn, automation_id)
    else:
        await conn.execute("UPDATE timer_rebuilds SET after_number = $2 WHERE automation_id = $1",
                           automation_id, after_number)
