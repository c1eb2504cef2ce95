"""A case as the `cases` table stores it: casestore writes it, the dispatcher reads it."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import asyncpg

CASE_COLUMNS = "id, form_id, case_number, status, data, creator, created_at, updated_at, version"


@dataclass(frozen=True, slots=True)
class StoredCase:
    """A `cases` row (the CASE_COLUMNS)."""

    id: uuid.UUID
    form_id: str
    case_number: int
    status: str
    data: dict[str, Any]
    creator: str
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(**record)
