"""A case as the `cases` table stores it: casestore writes it, the dispatcher reads it."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import TypedRow


@dataclass(frozen=True, slots=True)
class StoredCase(TypedRow):
    """A `cases` row (CASE_COLUMNS)."""

    id: uuid.UUID
    form_id: str
    case_number: int
    status: str
    data: dict[str, Any]
    creator: str
    created_at: datetime
    updated_at: datetime
    version: int
    skip_triggers: bool  # created through /skiptriggers: no automation runs for it


CASE_COLUMNS = StoredCase.columns()
