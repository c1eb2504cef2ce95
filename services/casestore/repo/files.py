"""Files attached to `file` fields, bytes included."""

import uuid

import asyncpg

from services.casestore.repo import Conn

FILE_COLUMNS = "id, case_id, field_id, name, content_type, size, created_at"


async def insert_file(conn: Conn, file_id: uuid.UUID, case_id: uuid.UUID, field_id: str,
                      name: str, content_type: str, content: bytes) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO files (id, case_id, field_id, name, content_type, size, content)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {FILE_COLUMNS}",
        file_id, case_id, field_id, name, content_type, len(content), content)
    assert row is not None
    return row


async def delete_files_except(conn: Conn, case_id: uuid.UUID, field_id: str,
                              kept: list[uuid.UUID]) -> None:
    """Delete the field's files of the case that are not in `kept` (their bytes go with them)."""
    await conn.execute(
        "DELETE FROM files WHERE case_id = $1 AND field_id = $2 AND id <> ALL($3::uuid[])",
        case_id, field_id, kept)


async def get_file(conn: Conn, file_id: uuid.UUID, *,
                   content: bool = False) -> asyncpg.Record | None:
    columns = FILE_COLUMNS + (", content" if content else "")
    return await conn.fetchrow(f"SELECT {columns} FROM files WHERE id = $1", file_id)
