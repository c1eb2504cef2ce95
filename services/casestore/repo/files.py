"""Files attached to `file` fields, bytes included."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.casestore.repo import Conn
from shared.db import TypedRow


@dataclass(frozen=True, slots=True)
class FileRow(TypedRow):
    """A stored file without its bytes (FILE_COLUMNS)."""

    id: uuid.UUID
    case_id: uuid.UUID
    field_id: str
    name: str
    content_type: str
    size: int
    created_at: datetime

    def case_entry(self) -> dict[str, Any]:
        """The entry a file field's list in the case data holds."""
        return {"id": str(self.id), "name": self.name, "content_type": self.content_type,
                "size": self.size}

    def to_api(self, url: str) -> dict[str, Any]:
        """With `url`, a signed download URL for it."""
        return {**self.case_entry(), "case_id": str(self.case_id), "field_id": self.field_id,
                "created_at": self.created_at.isoformat(), "url": url}


FILE_COLUMNS = FileRow.columns()


@dataclass(frozen=True, slots=True)
class FileWithContent(FileRow):
    content: bytes


async def insert_file(conn: Conn, file_id: uuid.UUID, case_id: uuid.UUID, field_id: str,
                      name: str, content_type: str, content: bytes) -> FileRow:
    return await FileRow.written(
        conn, "INSERT INTO files (id, case_id, field_id, name, content_type, size, content)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {FILE_COLUMNS}",
        file_id, case_id, field_id, name, content_type, len(content), content)


async def delete_files_except(conn: Conn, case_id: uuid.UUID, field_id: str,
                              kept: list[uuid.UUID]) -> None:
    """Delete the field's files of the case that are not in `kept` (their bytes go with them)."""
    await conn.execute(
        "DELETE FROM files WHERE case_id = $1 AND field_id = $2 AND id <> ALL($3::uuid[])",
        case_id, field_id, kept)


async def get_file(conn: Conn, file_id: uuid.UUID) -> FileRow | None:
    return await FileRow.fetch_one(
        conn, f"SELECT {FILE_COLUMNS} FROM files WHERE id = $1", file_id)


async def get_file_with_content(conn: Conn, file_id: uuid.UUID) -> FileWithContent | None:
    return await FileWithContent.fetch_one(
        conn, f"SELECT {FILE_COLUMNS}, content FROM files WHERE id = $1",
        file_id)
