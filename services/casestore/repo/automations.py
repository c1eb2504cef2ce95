"""Automations and their `once` claims."""

import uuid
from typing import Any

import asyncpg

from services.casestore.repo import Conn

AUTOMATION_COLUMNS = "id, form_id, definition, enabled, secret, created_at, updated_at"


async def insert_automation(conn: Conn, automation_id: uuid.UUID, form_id: str,
                            definition: dict[str, Any], enabled: bool,
                            secret: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO automations (id, form_id, definition, enabled, secret)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {AUTOMATION_COLUMNS}",
        automation_id, form_id, definition, enabled, secret)
    assert row is not None
    return row


async def get_automation(conn: Conn, automation_id: uuid.UUID, *,
                         lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(
        f"SELECT {AUTOMATION_COLUMNS} FROM automations WHERE id = $1{suffix}", automation_id)


async def list_automations(conn: Conn, form_id: str) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        f"SELECT {AUTOMATION_COLUMNS} FROM automations WHERE form_id = $1"
        " ORDER BY created_at, id", form_id))


async def update_automation(conn: Conn, automation_id: uuid.UUID, *,
                            definition: dict[str, Any] | None = None,
                            enabled: bool | None = None,
                            secret: str | None = None) -> asyncpg.Record | None:
    """Change what is given, keep the rest; None if there is no such automation."""
    return await conn.fetchrow(
        "UPDATE automations SET definition = coalesce($2, definition),"
        " enabled = coalesce($3, enabled), secret = coalesce($4, secret), updated_at = now()"
        f" WHERE id = $1 RETURNING {AUTOMATION_COLUMNS}",
        automation_id, definition, enabled, secret)


async def automation_secrets(conn: Conn, *, lock: bool = False) -> list[asyncpg.Record]:
    """Every automation's id, definition and secret, to re-encrypt them."""
    suffix = " FOR UPDATE" if lock else ""
    return list(await conn.fetch(
        f"SELECT id, definition, secret FROM automations ORDER BY id{suffix}"))


async def set_automation_secrets(conn: Conn, automation_id: uuid.UUID,
                                 definition: dict[str, Any], secret: str) -> None:
    """Store re-encrypted values; not a change anyone made, so updated_at stays."""
    await conn.execute("UPDATE automations SET definition = $2, secret = $3 WHERE id = $1",
                       automation_id, definition, secret)


async def delete_automation(conn: Conn, automation_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"DELETE FROM automations WHERE id = $1 RETURNING {AUTOMATION_COLUMNS}", automation_id)


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
