"""ingest's read-only queries; casestore stays the only writer."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg

from services.ingest.models import Hook
from shared.automations import AutomationDefinition
from shared.errors import DependencyUnavailable
from shared.forms import FormDefinition, form_columns
from shared.secrets import token_index

# A read on the request path that cannot finish quickly counts as the database being down:
# ingest then answers from memory or with a 503, and no client waits out a connect timeout.
READ_WITHIN = 2.0
DATABASE_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


@contextlib.asynccontextmanager
async def bounded_read() -> AsyncIterator[None]:
    """Raise DependencyUnavailable if the reads inside fail for want of a database."""
    try:
        async with asyncio.timeout(READ_WITHIN):
            yield
    except DATABASE_DOWN as exc:  # a timeout is an OSError too
        raise DependencyUnavailable(f"Postgres unavailable: {exc!r}") from exc


HOOK_QUERY = (
    "SELECT w.id AS webhook_id, w.token, w.token_index, w.enabled, w.authenticate_user,"
    f" w.updated_at, w.verify, w.verify_secret, {form_columns('f')}"
    " FROM incoming_webhooks w JOIN forms f ON f.id = w.form_id"
)


def _hook(row: asyncpg.Record, index_key: bytes) -> Hook:
    """A webhook by its token's index: stored (a sealed token), or made from a token still
    kept in clear (a row from before migration 012 that casestore has not sealed yet)."""
    form = FormDefinition.from_record(row)
    index = row["token_index"] if row["token"] is None else token_index(index_key, row["token"])
    return Hook(webhook_id=row["webhook_id"], token_index=index, enabled=row["enabled"],
                authenticate_user=row["authenticate_user"], form=form,
                changed_at=row["updated_at"], verify=row["verify"],
                verify_secret=row["verify_secret"])


async def all_hooks(pool: asyncpg.Pool, index_key: bytes) -> list[Hook]:
    return [_hook(r, index_key) for r in await pool.fetch(HOOK_QUERY)]


async def hook_for_form(pool: asyncpg.Pool, index_key: bytes, form_id: str) -> Hook | None:
    row = await pool.fetchrow(HOOK_QUERY + " WHERE f.id = $1", form_id)
    return _hook(row, index_key) if row else None


async def recent_hooks(pool: asyncpg.Pool, index_key: bytes, seconds: float) -> list[Hook]:
    """Webhooks made, enabled, disabled or rotated in the last `seconds`."""
    async with bounded_read():
        rows = await pool.fetch(
            HOOK_QUERY + " WHERE w.updated_at > now() - make_interval(secs => $1)", seconds)
    return [_hook(r, index_key) for r in rows]


async def auth_key_user(pool: asyncpg.Pool, key_hash: bytes, webhook_id: uuid.UUID,
                        form_id: str) -> str | None:
    """The key's user, if the key exists for this webhook and its user may still register in
    the form."""
    async with bounded_read():
        username = await pool.fetchval(
            "SELECT k.username FROM auth_keys k JOIN user_forms uf"
            " ON uf.username = k.username AND uf.form_id = $3"
            " WHERE k.key_hash = $1 AND k.webhook_id = $2", key_hash, webhook_id, form_id)
    return str(username) if username is not None else None


async def automation_with_form(pool: asyncpg.Pool, automation_id: uuid.UUID
                               ) -> tuple[AutomationDefinition, FormDefinition] | None:
    """For returnDataURL answers: which response keys go into which fields of which form."""
    async with bounded_read():
        row = await pool.fetchrow(
            f"SELECT a.definition, {form_columns('f')}"
            " FROM automations a JOIN forms f ON f.id = a.form_id WHERE a.id = $1",
            automation_id)
    if row is None:
        return None
    return AutomationDefinition.model_validate(row["definition"]), FormDefinition.from_record(row)


async def idempotency_body_hash(pool: asyncpg.Pool, scope: str) -> str | None:
    """The body hash of the unexpired record of a scoped Idempotency-Key (casestore writes it
    with the key's case), or None."""
    async with bounded_read():
        value = await pool.fetchval(
            "SELECT body_hash FROM idempotency_keys WHERE scope = $1 AND expires_at > now()",
            scope)
    return str(value) if value is not None else None
