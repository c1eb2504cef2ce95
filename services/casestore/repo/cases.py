"""Cases and their history."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from services.casestore.repo import Conn
from shared.cases import CASE_COLUMNS, StoredCase
from shared.db import TypedRow


@dataclass(frozen=True, slots=True)
class CaseRow(StoredCase):
    """A case as stored (CASE_COLUMNS), as the admin API shows it."""

    def to_api(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "form_id": self.form_id, "case_number": self.case_number,
            "status": self.status, "data": self.data, "creator": self.creator,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(), "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class HistoryRow(TypedRow):
    """One change of a case: who changed which fields (from what to what), when."""

    version: int
    author: str
    changed_at: datetime
    changes: list[dict[str, Any]]

    def to_api(self) -> dict[str, Any]:
        return {"version": self.version, "author": self.author,
                "changed_at": self.changed_at.isoformat(), "changes": self.changes}


# (id, status, data, creator, skip_triggers, the first history entry's changes)
NewCaseRow = tuple[uuid.UUID, str, dict[str, Any], str, bool, list[dict[str, Any]]]


async def insert_cases(conn: Conn, form_id: str, rows: list[NewCaseRow]) -> list[CaseRow]:
    """Insert cases numbered on from the form's counter, in input order, each with its first
    history entry (version 1, by its creator), returned in input order. One statement: the
    counter row is each form's point of contention, and stays locked until commit."""
    inserted = await conn.fetch(
        "WITH new AS (SELECT * FROM unnest($2::uuid[], $3::text[], $4::jsonb[], $5::text[],"
        "  $6::bool[], $7::text[]) WITH ORDINALITY AS t(id, status, data, creator, skip,"
        "  changes, n)),"
        " numbered AS (UPDATE case_counters SET last_number = last_number + cardinality($2)"
        "  WHERE form_id = $1 RETURNING last_number - cardinality($2) AS before),"
        " history AS (INSERT INTO case_history (case_id, version, author, changes)"
        "  SELECT id, 1, creator, changes::jsonb FROM new)"
        " INSERT INTO cases (id, form_id, case_number, status, data, creator, skip_triggers)"
        " SELECT new.id, $1, numbered.before + new.n, new.status, new.data, new.creator,"
        f" new.skip FROM new, numbered RETURNING {CASE_COLUMNS}",
        form_id, *map(list, zip(*(row[:5] for row in rows), strict=True)),
        # As JSON text: a list of lists would be taken for a two-dimensional array.
        [orjson.dumps(row[5]).decode() for row in rows])
    by_id = {r["id"]: r for r in inserted}
    return [CaseRow.from_record(by_id[row[0]]) for row in rows]


async def get_case(conn: Conn, case_id: uuid.UUID, *, lock: bool = False) -> CaseRow | None:
    suffix = " FOR UPDATE" if lock else ""
    return await CaseRow.fetch_one(
        conn, f"SELECT {CASE_COLUMNS} FROM cases WHERE id = $1{suffix}", case_id)


async def list_cases(conn: Conn, form_id: str, *, status: str | None, limit: int,
                     before_number: int | None) -> list[CaseRow]:
    return await CaseRow.fetch(
        conn, f"SELECT {CASE_COLUMNS} FROM cases WHERE form_id = $1"
        " AND ($2::text IS NULL OR status = $2)"
        " AND ($3::bigint IS NULL OR case_number < $3)"
        " ORDER BY case_number DESC LIMIT $4",
        form_id, status, before_number, limit)


async def count_cases(conn: Conn, form_id: str, status: str | None) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM cases WHERE form_id = $1 AND ($2::text IS NULL OR status = $2)",
        form_id, status))


async def update_case(conn: Conn, case_id: uuid.UUID, status: str,
                      data: dict[str, Any]) -> CaseRow:
    return await CaseRow.written(
        conn, f"UPDATE cases SET status = $2, data = $3, updated_at = now(), version = version + 1"
        f" WHERE id = $1 RETURNING {CASE_COLUMNS}", case_id, status, data)


async def delete_case(conn: Conn, case_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM cases WHERE id = $1", case_id)


HistoryEntry = tuple[uuid.UUID, int, str, list[dict[str, Any]]]


async def insert_history(conn: Conn, entries: list[HistoryEntry]) -> None:
    """(case_id, version, author, changes) entries."""
    await conn.executemany(
        "INSERT INTO case_history (case_id, version, author, changes) VALUES ($1, $2, $3, $4)",
        entries)


async def case_history(conn: Conn, case_id: uuid.UUID) -> list[HistoryRow]:
    return await HistoryRow.fetch(
        conn, "SELECT version, author, changed_at, changes FROM case_history"
        " WHERE case_id = $1 ORDER BY id", case_id)


async def status_entered(conn: Conn, case_ids: list[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """When each case's status last changed (cases whose status never changed are absent)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (case_id) case_id, changed_at FROM case_history"
        " WHERE case_id = ANY($1::uuid[]) AND changes @> '[{\"field\": \"status\"}]'"
        " ORDER BY case_id, id DESC", case_ids)
    return {r["case_id"]: r["changed_at"] for r in rows}
