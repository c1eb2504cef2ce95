"""What ingest knows about one incoming webhook."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.forms import FormDefinition


@dataclass(frozen=True)
class Hook:
    webhook_id: uuid.UUID
    token_index: bytes  # shared.secrets.token_index of its token, which ingest never stores
    enabled: bool
    authenticate_user: bool
    form: FormDefinition
    changed_at: datetime  # the webhook row's (enabled, rotated), not its form's
    # How a sender's signature is checked (shared/incoming_signatures.py) and the encrypted
    # secret it is checked with; None: not checked.
    verify: dict[str, Any] | None = None
    verify_secret: str | None = None


@dataclass(frozen=True)
class HookOptions:
    """The path suffixes of the seed: `/skipvalidate`, `/skiptriggers`, in either order."""

    skip_validate: bool = False
    skip_triggers: bool = False

    @classmethod
    def parse(cls, suffix: str) -> "HookOptions | None":
        parts = [p for p in suffix.split("/") if p]
        if len(parts) != len(set(parts)) or not set(parts) <= {"skipvalidate", "skiptriggers"}:
            return None
        return cls(skip_validate="skipvalidate" in parts, skip_triggers="skiptriggers" in parts)
