"""Automations and their `once` claims."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.casestore.repo import Conn
from services.casestore.repo.schedule import HealthRow
from shared.automations import AutomationDefinition
from shared.crypto import SecretBox
from shared.db import TypedRow
from shared.outgoing_auth import with_secret

AUTOMATION_COLUMNS = ("id, form_id, definition, enabled, secret, created_at, updated_at,"
                      " disabled_reason, disabled_at, previous_secret, previous_secret_until")
# The automations of forms; the operational webhook (services/casestore/operational.py) is
# kept by its own API and never read or changed through these.
OF_CASES = "kind = 'case'"
# What an auth secret reads as; sent back on PUT it means "keep the stored one".
MASK = "***"


@dataclass(frozen=True, slots=True)
class AutomationRow(TypedRow):
    """An automation as stored (the AUTOMATION_COLUMNS): password and secret encrypted."""

    id: uuid.UUID
    form_id: str
    definition: dict[str, Any]
    enabled: bool
    secret: str
    created_at: datetime
    updated_at: datetime
    disabled_reason: str | None
    disabled_at: datetime | None
    # The secret a rotation replaced keeps signing beside the new one until then.
    previous_secret: str | None
    previous_secret_until: datetime | None

    def to_api(self, box: SecretBox, health: HealthRow | None = None) -> dict[str, Any]:
        """The definition's keys beside id, state, health and secret: the secret revealed, the
        password never."""
        definition = with_secret(AutomationDefinition.model_validate(self.definition).public(),
                                   lambda _: MASK)
        return {"id": str(self.id), "form_id": self.form_id, "enabled": self.enabled,
                "disabled_reason": self.disabled_reason, "disabled_at": _time(self.disabled_at),
                "secret": box.decrypt(self.secret),
                "previous_secret_until": _time(self.previous_secret_until),
                "health": (health or HealthRow()).to_api(),
                "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat(), **definition}


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _row(record: asyncpg.Record | None) -> AutomationRow | None:
    return AutomationRow.from_record(record) if record else None


async def insert_automation(conn: Conn, automation_id: uuid.UUID, form_id: str,
                            definition: dict[str, Any], enabled: bool,
                            secret: str) -> AutomationRow:
    return await AutomationRow.written(
        conn, "INSERT INTO automations (id, form_id, definition, enabled, secret)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {AUTOMATION_COLUMNS}",
        automation_id, form_id, definition, enabled, secret)


async def get_automation(conn: Conn, automation_id: uuid.UUID, *,
                         lock: bool = False) -> AutomationRow | None:
    suffix = " FOR UPDATE" if lock else ""
    return _row(await conn.fetchrow(
        f"SELECT {AUTOMATION_COLUMNS} FROM automations WHERE id = $1 AND {OF_CASES}{suffix}",
        automation_id))


async def list_automations(conn: Conn, form_id: str) -> list[AutomationRow]:
    return await AutomationRow.fetch(
        conn, f"SELECT {AUTOMATION_COLUMNS} FROM automations WHERE form_id = $1"
        " ORDER BY created_at, id", form_id)


async def update_automation(conn: Conn, automation_id: uuid.UUID, *,
                            definition: dict[str, Any] | None = None,
                            enabled: bool | None = None,
                            secret: str | None = None) -> AutomationRow | None:
    """Change what is given, keep the rest; None if there is no such automation."""
    return _row(await conn.fetchrow(
        "UPDATE automations SET definition = coalesce($2, definition),"
        " enabled = coalesce($3, enabled), secret = coalesce($4, secret), updated_at = now()"
        f" WHERE id = $1 AND {OF_CASES} RETURNING {AUTOMATION_COLUMNS}",
        automation_id, definition, enabled, secret))


async def all_automations(conn: Conn, *, lock: bool = False) -> list[AutomationRow]:
    """Every automation, e.g. to re-encrypt their secrets."""
    suffix = " FOR UPDATE" if lock else ""
    return await AutomationRow.fetch(
        conn, f"SELECT {AUTOMATION_COLUMNS} FROM automations ORDER BY id{suffix}")


async def set_automation_secrets(conn: Conn, automation_id: uuid.UUID,
                                 definition: dict[str, Any], secret: str,
                                 previous_secret: str | None) -> None:
    """Store re-encrypted values; not a change anyone made, so updated_at stays."""
    await conn.execute("UPDATE automations SET definition = $2, secret = $3,"
                       " previous_secret = $4 WHERE id = $1",
                       automation_id, definition, secret, previous_secret)


async def set_enabled(conn: Conn, automation_id: uuid.UUID, enabled: bool,
                      reason: str | None = None) -> AutomationRow | None:
    """Enable it (its endpoint starts healthy again) or disable it, saying why. Disabling one
    that is disabled already keeps the reason and time it was first disabled for (a 410 Gone
    stays the reason however often it is disabled again)."""
    row = _row(await conn.fetchrow(
        "UPDATE automations SET enabled = $2, updated_at = now(),"
        " disabled_reason = CASE WHEN $2 THEN NULL WHEN NOT enabled THEN disabled_reason"
        "   ELSE $3 END,"
        " disabled_at = CASE WHEN $2 THEN NULL WHEN NOT enabled THEN disabled_at ELSE now() END"
        f" WHERE id = $1 AND {OF_CASES} RETURNING {AUTOMATION_COLUMNS}", automation_id,
        enabled, reason))
    if row is not None and enabled:
        await conn.execute(
            "UPDATE endpoint_health SET state = 'closed', consecutive_failures = 0,"
            " times_opened = 0, open_until = NULL, failing_since = NULL"
            " WHERE automation_id = $1", automation_id)
    return row


async def rotate_secret(conn: Conn, automation_id: uuid.UUID, secret: str,
                        overlap_seconds: float) -> AutomationRow | None:
    """The new secret signs from now on; the old one beside it for `overlap_seconds`."""
    return _row(await conn.fetchrow(
        "UPDATE automations SET previous_secret = secret, secret = $2, updated_at = now(),"
        " previous_secret_until = now() + make_interval(secs => $3)"
        f" WHERE id = $1 AND {OF_CASES} RETURNING {AUTOMATION_COLUMNS}", automation_id, secret,
        overlap_seconds))


async def delete_automation(conn: Conn, automation_id: uuid.UUID) -> AutomationRow | None:
    return _row(await conn.fetchrow(
        f"DELETE FROM automations WHERE id = $1 AND {OF_CASES} RETURNING {AUTOMATION_COLUMNS}",
        automation_id))


async def claim_once(conn: Conn, automation_id: uuid.UUID, case_id: uuid.UUID,
                     delivery_id: uuid.UUID) -> uuid.UUID | None:
    """The delivery that owns (automation, case): the first to claim it. None: no automation.

    Run in a transaction: the key-share lock keeps the automation from being deleted between
    the check and the insert, and a concurrent claimer's insert is waited for by ON CONFLICT.
    """
    if await conn.fetchval("SELECT 1 FROM automations WHERE id = $1 FOR KEY SHARE",
                           automation_id) is None:
        return None
    await conn.execute(
        "INSERT INTO automation_claims (automation_id, case_id, delivery_id) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING", automation_id, case_id, delivery_id)
    owner = await conn.fetchval(
        "SELECT delivery_id FROM automation_claims WHERE automation_id = $1 AND case_id = $2",
        automation_id, case_id)
    assert isinstance(owner, uuid.UUID)
    return owner
