"""The operational webhook (one automation of kind 'operational') and its deliveries."""

import uuid
from dataclasses import dataclass
from typing import Any

from services.casestore.repo import Conn
from services.casestore.repo.automations import AUTOMATION_COLUMNS, AutomationRow


@dataclass(frozen=True, slots=True)
class OperationalWebhook:
    automation: AutomationRow
    events: list[str]


@dataclass(frozen=True, slots=True)
class Listening:
    """What an emitter needs to know, read in its own transaction."""

    automation_id: uuid.UUID
    events: list[str]
    name: str


async def get(conn: Conn, *, lock: bool = False) -> OperationalWebhook | None:
    row = await conn.fetchrow(
        f"SELECT {', '.join('a.' + c.strip() for c in AUTOMATION_COLUMNS.split(','))},"
        " o.events FROM operational_webhook o JOIN automations a ON a.id = o.automation_id"
        + (" FOR UPDATE OF o, a" if lock else ""))
    if row is None:
        return None
    fields = {k: v for k, v in row.items() if k != "events"}
    return OperationalWebhook(AutomationRow(**fields), list(row["events"]))


async def listening(conn: Conn) -> Listening | None:
    """The operational webhook if it is enabled (its events), else None."""
    row = await conn.fetchrow(
        "SELECT o.automation_id, o.events, a.definition->>'name' AS name"
        " FROM operational_webhook o JOIN automations a ON a.id = o.automation_id"
        " WHERE a.enabled")
    return Listening(row["automation_id"], list(row["events"]), row["name"]) if row else None


async def create(conn: Conn, automation_id: uuid.UUID, definition: dict[str, Any],
                 enabled: bool, secret: str, events: list[str]) -> None:
    await conn.execute(
        "INSERT INTO automations (id, form_id, kind, definition, enabled, secret)"
        " VALUES ($1, NULL, 'operational', $2, $3, $4)", automation_id, definition, enabled,
        secret)
    await conn.execute("INSERT INTO operational_webhook (automation_id, events) VALUES ($1, $2)",
                       automation_id, events)
    # The scheduler hands out the attempts of endpoints with a health row.
    await conn.execute("INSERT INTO endpoint_health (automation_id) VALUES ($1)", automation_id)


async def update(conn: Conn, definition: dict[str, Any], enabled: bool,
                 events: list[str]) -> None:
    await conn.execute(
        "UPDATE automations a SET definition = $1, enabled = $2, updated_at = now(),"
        " disabled_reason = CASE WHEN $2 THEN NULL ELSE 'disabled through the API' END,"
        " disabled_at = CASE WHEN $2 THEN NULL ELSE coalesce(disabled_at, now()) END"
        " FROM operational_webhook o WHERE a.id = o.automation_id", definition, enabled)
    await conn.execute("UPDATE operational_webhook SET events = $1", events)


async def set_secret(conn: Conn, automation_id: uuid.UUID, secret: str) -> None:
    await conn.execute("UPDATE automations SET secret = $2, updated_at = now() WHERE id = $1",
                       automation_id, secret)


async def insert_delivery(conn: Conn, automation_id: uuid.UUID, name: str,
                          delivery_id: uuid.UUID, payload: dict[str, Any],
                          correlation_id: str | None, attempts: int) -> None:
    """An operational event's delivery, due at once on the extended schedule."""
    await conn.execute(
        "INSERT INTO deliveries (id, automation_id, case_id, form_id, event_id, webhook_id,"
        " state, automation_name, schedule, payload, attempts_allowed, next_attempt_at,"
        " correlation_id)"
        " VALUES ($1, $2, NULL, '', $1, $3, 'pending', $4, 'extended', $5, $6, now(), $7)",
        delivery_id, automation_id, f"msg_{delivery_id.hex}", name, payload, attempts,
        correlation_id)


async def note_dead_letters(conn: Conn, seen: int, now: int) -> bool:
    """Move the dead letters told of from `seen` to `now`; False if another replica did."""
    return await conn.fetchval(
        "UPDATE operational_webhook SET dead_letters_seen = $2 WHERE dead_letters_seen = $1"
        " RETURNING true", seen, now) is not None


async def dead_letters_seen(conn: Conn) -> int | None:
    value = await conn.fetchval("SELECT dead_letters_seen FROM operational_webhook")
    return int(value) if value is not None else None
