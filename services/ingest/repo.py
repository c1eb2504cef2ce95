"""ingest's read-only queries; casestore stays the only writer."""

import uuid

import asyncpg

from services.ingest.models import Hook
from shared.automations import AutomationDefinition
from shared.forms import FormDefinition

HOOK_QUERY = (
    "SELECT w.id AS webhook_id, w.token, w.enabled, w.authenticate_user,"
    " f.id, f.name, f.sections, f.fields, f.statuses, f.revision"
    " FROM incoming_webhooks w JOIN forms f ON f.id = w.form_id"
)


def _hook(row: asyncpg.Record) -> Hook:
    form = FormDefinition.from_record(row)
    return Hook(webhook_id=row["webhook_id"], token=row["token"], enabled=row["enabled"],
                authenticate_user=row["authenticate_user"], form=form)


async def all_hooks(pool: asyncpg.Pool) -> list[Hook]:
    return [_hook(r) for r in await pool.fetch(HOOK_QUERY)]


async def hook_for_form(pool: asyncpg.Pool, form_id: str) -> Hook | None:
    row = await pool.fetchrow(HOOK_QUERY + " WHERE f.id = $1", form_id)
    return _hook(row) if row else None


async def hook_for_token(pool: asyncpg.Pool, token: str) -> Hook | None:
    row = await pool.fetchrow(HOOK_QUERY + " WHERE w.token = $1", token)
    return _hook(row) if row else None


async def auth_key_allows(pool: asyncpg.Pool, key_hash: bytes, webhook_id: uuid.UUID,
                          form_id: str) -> bool:
    """The key exists for this webhook and its user may still register in the form."""
    return bool(await pool.fetchval(
        "SELECT 1 FROM auth_keys k JOIN user_forms uf"
        " ON uf.username = k.username AND uf.form_id = $3"
        " WHERE k.key_hash = $1 AND k.webhook_id = $2", key_hash, webhook_id, form_id))


async def automation_definition(pool: asyncpg.Pool, automation_id: uuid.UUID
                                ) -> AutomationDefinition | None:
    """For returnDataURL answers: which response keys go into which fields."""
    row = await pool.fetchrow("SELECT definition FROM automations WHERE id = $1", automation_id)
    return AutomationDefinition.model_validate(row["definition"]) if row else None
