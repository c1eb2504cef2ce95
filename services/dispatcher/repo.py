"""The dispatcher's read-only queries; casestore stays the only writer."""

import uuid
from dataclasses import dataclass

import asyncpg

from shared.automations import AutomationDefinition, with_password
from shared.crypto import SecretBox
from shared.errors import ConfigurationError
from shared.forms import FormDefinition

# The keys that decrypt stored secrets: one set per process, given by the app factory
# (use_secret_box) before any automation is read.
_secrets: SecretBox | None = None


def use_secret_box(box: SecretBox) -> None:
    global _secrets  # set once at start-up, read by every automation load
    _secrets = box


def _box() -> SecretBox:
    if _secrets is None:
        raise ConfigurationError("the dispatcher reads automations before its encryption keys "
                                 "are set (use_secret_box)")
    return _secrets


@dataclass(frozen=True)
class Automation:
    id: uuid.UUID
    form_id: str
    enabled: bool
    secret: str
    definition: AutomationDefinition


def _automation(row: asyncpg.Record) -> Automation:
    """Secrets decrypted: the sender signs with the secret and sends the password."""
    box = _box()
    return Automation(id=row["id"], form_id=row["form_id"], enabled=row["enabled"],
                      secret=box.decrypt(row["secret"]),
                      definition=AutomationDefinition.model_validate(
                          with_password(row["definition"], box.decrypt)))


@dataclass(frozen=True)
class FormRules:
    """A form and its enabled automations (in creation order) at one revision."""

    form: FormDefinition
    automations: list[Automation]
    revision: int  # the form's, read once: pydantic private attributes are slow to read


async def form_rules(pool: asyncpg.Pool, form_id: str) -> FormRules | None:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):
        form_row = await conn.fetchrow("SELECT id, name, sections, fields, statuses, revision"
                                       " FROM forms WHERE id = $1", form_id)
        if form_row is None:
            return None
        rows = await conn.fetch("SELECT id, form_id, enabled, secret, definition FROM automations"
                                " WHERE form_id = $1 AND enabled"
                                " ORDER BY created_at, id", form_id)
    form = FormDefinition.from_record(form_row)
    return FormRules(form, [_automation(r) for r in rows], form.revision)


async def automation(pool: asyncpg.Pool, automation_id: uuid.UUID) -> Automation | None:
    row = await pool.fetchrow("SELECT id, form_id, enabled, secret, definition FROM automations"
                              " WHERE id = $1", automation_id)
    return _automation(row) if row else None


async def form(pool: asyncpg.Pool, form_id: str) -> FormDefinition | None:
    row = await pool.fetchrow("SELECT id, name, sections, fields, statuses, revision"
                              " FROM forms WHERE id = $1", form_id)
    return FormDefinition.from_record(row) if row else None


async def case(pool: asyncpg.Pool, case_id: uuid.UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT id, form_id, case_number, status, data, creator, created_at, updated_at, version"
        " FROM cases WHERE id = $1", case_id)


async def delivery(pool: asyncpg.Pool, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT id, automation_id, case_id, form_id, event_id, webhook_id, state, created_at,"
        " updated_at FROM deliveries WHERE id = $1", delivery_id)


async def delivery_succeeded(pool: asyncpg.Pool, delivery_id: uuid.UUID) -> bool:
    return bool(await pool.fetchval(
        "SELECT state = 'succeeded' FROM deliveries WHERE id = $1", delivery_id))
