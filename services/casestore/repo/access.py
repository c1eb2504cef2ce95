"""Who may create cases through a form's incoming webhook: the webhook, users, auth keys."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.casestore.repo import Conn
from shared.db import TypedRow


@dataclass(frozen=True, slots=True)
class WebhookRow(TypedRow):
    """A form's incoming webhook (WEBHOOK_COLUMNS). Its token is sealed (services/casestore/
    webhook_tokens.py); `token` is clear only on a row from before migration 012 not yet
    sealed."""

    id: uuid.UUID
    form_id: str
    token: str | None
    token_sealed: str | None
    token_index: bytes | None
    enabled: bool
    authenticate_user: bool
    # How a sender's signature is checked (shared/incoming_signatures.py), and the secret it
    # is checked with, encrypted (shared/crypto.py).
    verify: dict[str, Any] | None = None
    verify_secret: str | None = None


WEBHOOK_COLUMNS = WebhookRow.columns()


@dataclass(frozen=True, slots=True)
class UserRow(TypedRow):
    """A user and the forms they may create cases in; never their password hash."""

    username: str
    created_at: datetime
    forms: list[str]

    def to_api(self) -> dict[str, Any]:
        return {"username": self.username, "forms": self.forms,
                "created_at": self.created_at.isoformat()}


async def get_webhook(conn: Conn, form_id: str) -> WebhookRow | None:
    return await WebhookRow.fetch_one(
        conn, f"SELECT {WEBHOOK_COLUMNS} FROM incoming_webhooks WHERE form_id = $1", form_id)


async def upsert_webhook(conn: Conn, form_id: str, sealed: str, index: bytes, enabled: bool,
                         authenticate_user: bool) -> WebhookRow:
    """The form's webhook with these settings; a new one gets this (sealed) token, an existing
    one keeps its own."""
    return await WebhookRow.written(
        conn, "INSERT INTO incoming_webhooks (id, form_id, token_sealed, token_index, enabled,"
        " authenticate_user) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (form_id) DO UPDATE"
        " SET enabled = EXCLUDED.enabled, authenticate_user = EXCLUDED.authenticate_user,"
        " updated_at = now()"
        f" RETURNING {WEBHOOK_COLUMNS}", uuid.uuid4(), form_id, sealed, index, enabled,
        authenticate_user)


async def set_webhook_token(conn: Conn, form_id: str, sealed: str,
                            index: bytes) -> WebhookRow | None:
    """Store a sealed token (a rotation, or one sealed or indexed anew); a clear one goes.
    The row counts as changed: ingest reads rows changed lately for a token it misses."""
    return await WebhookRow.fetch_one(
        conn, "UPDATE incoming_webhooks SET token = NULL, token_sealed = $2, token_index = $3,"
        " updated_at = now() WHERE form_id = $1"
        f" RETURNING {WEBHOOK_COLUMNS}", form_id, sealed, index)


async def all_webhooks(conn: Conn, lock: bool = False) -> list[WebhookRow]:
    return await WebhookRow.fetch(
        conn, f"SELECT {WEBHOOK_COLUMNS} FROM incoming_webhooks ORDER BY form_id"
        + (" FOR UPDATE" if lock else ""))


async def set_verification(conn: Conn, form_id: str, verify: dict[str, Any] | None,
                           secret: str | None) -> WebhookRow | None:
    """How the webhook checks signatures from now on (None: it does not)."""
    return await WebhookRow.fetch_one(
        conn, "UPDATE incoming_webhooks SET verify = $2, verify_secret = $3, updated_at = now()"
        f" WHERE form_id = $1 RETURNING {WEBHOOK_COLUMNS}", form_id, verify, secret)


async def reencrypt_verify_secrets(conn: Conn, rotate: Callable[[str], str]) -> int:
    """Every signed webhook's secret through `rotate` (a new encryption key); how many."""
    rows = await conn.fetch("SELECT id, verify_secret FROM incoming_webhooks"
                            " WHERE verify_secret IS NOT NULL FOR UPDATE")
    await conn.executemany("UPDATE incoming_webhooks SET verify_secret = $2 WHERE id = $1",
                           [(r["id"], rotate(r["verify_secret"])) for r in rows])
    return len(rows)


async def insert_user(conn: Conn, username: str, password_hash: str, forms: list[str]) -> None:
    await conn.execute("INSERT INTO users (username, password_hash) VALUES ($1, $2)",
                       username, password_hash)
    await conn.executemany("INSERT INTO user_forms (username, form_id) VALUES ($1, $2)",
                           [(username, f) for f in forms])


async def list_users(conn: Conn) -> list[UserRow]:
    rows = await conn.fetch(
        "SELECT u.username, u.created_at,"
        " coalesce(array_agg(uf.form_id ORDER BY uf.form_id)"
        "   FILTER (WHERE uf.form_id IS NOT NULL), '{}') AS forms"
        " FROM users u LEFT JOIN user_forms uf USING (username)"
        " GROUP BY u.username, u.created_at ORDER BY u.username")
    return [UserRow.from_record(r) for r in rows]


async def get_password_hash(conn: Conn, username: str) -> str | None:
    value = await conn.fetchval("SELECT password_hash FROM users WHERE username = $1", username)
    return str(value) if value is not None else None


async def set_password_hash(conn: Conn, username: str, password_hash: str) -> None:
    await conn.execute("UPDATE users SET password_hash = $2 WHERE username = $1",
                       username, password_hash)


async def user_may_register(conn: Conn, username: str, form_id: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT 1 FROM user_forms WHERE username = $1 AND form_id = $2", username, form_id))


async def lock_user(conn: Conn, username: str) -> bool:
    """Lock the user row until commit; False if there is no such user."""
    return bool(await conn.fetchval("SELECT 1 FROM users WHERE username = $1 FOR UPDATE",
                                    username))


async def set_user_forms(conn: Conn, username: str, forms: list[str]) -> None:
    """Exactly these forms from now on (auth keys are checked against them on every use)."""
    await conn.execute("DELETE FROM user_forms WHERE username = $1 AND form_id <> ALL($2::text[])",
                       username, forms)
    await conn.execute(
        "INSERT INTO user_forms (username, form_id) SELECT $1, unnest($2::text[])"
        " ON CONFLICT DO NOTHING", username, forms)


async def delete_all_auth_keys(conn: Conn, username: str) -> None:
    await conn.execute("DELETE FROM auth_keys WHERE username = $1", username)


async def delete_user(conn: Conn, username: str) -> bool:
    return bool(await conn.execute("DELETE FROM users WHERE username = $1", username) != "DELETE 0")


async def insert_auth_key(conn: Conn, key_hash: bytes, username: str,
                          webhook_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO auth_keys (key_hash, username, webhook_id) VALUES ($1, $2, $3)",
        key_hash, username, webhook_id)


async def delete_auth_keys(conn: Conn, username: str, webhook_id: uuid.UUID) -> int:
    result = await conn.execute(
        "DELETE FROM auth_keys WHERE username = $1 AND webhook_id = $2", username, webhook_id)
    return int(result.split()[-1])
