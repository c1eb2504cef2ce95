"""The audit log: one row per configuration change."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.casestore.repo import Conn
from shared.db import TypedRow


@dataclass(frozen=True, slots=True)
class AuditRow(TypedRow):
    """One change (the API shows it as answers.AuditEntry)."""

    id: int
    at: datetime
    actor: str
    via: str
    action: str
    target_type: str
    target_id: str
    diff: dict[str, Any]


AUDIT_COLUMNS = AuditRow.columns()


async def insert_entry(conn: Conn, actor: str, via: str, action: str, target_type: str,
                       target_id: str, diff: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, via, action, target_type, target_id, diff)"
        " VALUES ($1, $2, $3, $4, $5, $6)", actor, via, action, target_type, target_id, diff)


async def list_entries(conn: Conn, *, limit: int, before: int | None, actor: str | None,
                       target: str | None) -> list[AuditRow]:
    """Newest first, `before` an id; each filter led by its index."""
    return await AuditRow.fetch(
        conn, f"SELECT {AUDIT_COLUMNS} FROM audit_log"
        " WHERE ($2::bigint IS NULL OR id < $2) AND ($3::text IS NULL OR actor = $3)"
        " AND ($4::text IS NULL OR target_id = $4) ORDER BY id DESC LIMIT $1",
        limit, before, actor, target)
