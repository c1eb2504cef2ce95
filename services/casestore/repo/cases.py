"""Cases and their history."""

import uuid
from typing import Any

import asyncpg

from services.casestore.repo import Conn

CASE_COLUMNS = "id, form_id, case_number, status, data, creator, created_at, updated_at, version"


async def reserve_case_numbers(conn: Conn, form_id: str, count: int) -> int:
    """The first of `count` consecutive numbers; the counter row stays locked until commit."""
    last = await conn.fetchval(
        "UPDATE case_counters SET last_number = last_number + $2 WHERE form_id = $1"
        " RETURNING last_number", form_id, count)
    return int(last) - count + 1


NewCaseRow = tuple[uuid.UUID, str, int, str, dict[str, Any], str]


async def insert_cases(conn: Conn, rows: list[NewCaseRow]) -> list[asyncpg.Record]:
    """Insert (id, form_id, case_number, status, data, creator) rows, returned in input order."""
    inserted = await conn.fetch(
        "INSERT INTO cases (id, form_id, case_number, status, data, creator)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::jsonb[],"
        f" $6::text[]) RETURNING {CASE_COLUMNS}", *map(list, zip(*rows, strict=True)))
    by_id = {r["id"]: r for r in inserted}
    return [by_id[row[0]] for row in rows]


async def get_case(conn: Conn, case_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(f"SELECT {CASE_COLUMNS} FROM cases WHERE id = $1{suffix}", case_id)


async def list_cases(conn: Conn, form_id: str, *, status: str | None, limit: int,
                     before_number: int | None) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        f"SELECT {CASE_COLUMNS} FROM cases WHERE form_id = $1"
        " AND ($2::text IS NULL OR status = $2)"
        " AND ($3::bigint IS NULL OR case_number < $3)"
        " ORDER BY case_number DESC LIMIT $4",
        form_id, status, before_number, limit))


async def count_cases(conn: Conn, form_id: str, status: str | None) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM cases WHERE form_id = $1 AND ($2::text IS NULL OR status = $2)",
        form_id, status))


async def update_case(conn: Conn, case_id: uuid.UUID, status: str,
                      data: dict[str, Any]) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"UPDATE cases SET status = $2, data = $3, updated_at = now(), version = version + 1"
        f" WHERE id = $1 RETURNING {CASE_COLUMNS}", case_id, status, data)
    assert row is not None
    return row


async def delete_case(conn: Conn, case_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM cases WHERE id = $1", case_id)


HistoryEntry = tuple[uuid.UUID, int, str, list[dict[str, Any]]]


async def insert_history(conn: Conn, entries: list[HistoryEntry]) -> None:
    """(case_id, version, author, changes) entries."""
    await conn.executemany(
        "INSERT INTO case_history (case_id, version, author, changes) VALUES ($1, $2, $3, $4)",
        entries)


async def case_history(conn: Conn, case_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT version, author, changed_at, changes FROM case_history"
        " WHERE case_id = $1 ORDER BY id", case_id))
