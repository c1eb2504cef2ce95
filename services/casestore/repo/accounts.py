"""Accounts and their API tokens."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.casestore.repo import Conn
from shared.db import TypedRow


@dataclass(frozen=True, slots=True)
class AccountRow(TypedRow):
    """An account; never its password hash. The API shows it as answers.Account."""

    username: str
    role: str
    has_password: bool
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True, slots=True)
class TokenRow(TypedRow):
    """An API token as it may be listed (answers.Token): its name and prefix, never the token."""

    id: uuid.UUID
    username: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """Whom a presented token stands for."""

    token_id: uuid.UUID
    prefix: str
    username: str
    role: str
    stale: bool  # its last use was written over a minute ago (or never)


ACCOUNT_COLUMNS = ("username, role, password_hash IS NOT NULL AS has_password, disabled_at,"
                   " created_at, updated_at")
TOKEN_COLUMNS = TokenRow.columns()


async def insert_account(conn: Conn, username: str, role: str,
                         password_hash: str | None) -> AccountRow:
    return await AccountRow.written(
        conn, "INSERT INTO accounts (username, role, password_hash) VALUES ($1, $2, $3)"
        f" RETURNING {ACCOUNT_COLUMNS}", username, role, password_hash)


async def get_account(conn: Conn, username: str, *, lock: bool = False) -> AccountRow | None:
    return await AccountRow.fetch_one(
        conn, f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE username = $1"
        + (" FOR UPDATE" if lock else ""), username)


async def list_accounts(conn: Conn) -> list[AccountRow]:
    return await AccountRow.fetch(
        conn, f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY username")


async def other_enabled_admins(conn: Conn, username: str) -> int:
    """Enabled admins besides `username`, their rows locked: two requests cannot each take
    away one of the last two."""
    rows = await conn.fetch("SELECT username FROM accounts WHERE role = 'admin'"
                            " AND disabled_at IS NULL AND username <> $1 FOR UPDATE", username)
    return len(rows)


async def update_account(conn: Conn, username: str, *, role: str | None,
                         password_hash: str | None, disabled: bool | None) -> AccountRow:
    row = await conn.fetchrow(
        "UPDATE accounts SET role = coalesce($2, role),"
        " password_hash = coalesce($3, password_hash),"
        " disabled_at = CASE WHEN $4::bool IS NULL THEN disabled_at"
        "   WHEN $4 THEN coalesce(disabled_at, now()) ELSE NULL END, updated_at = now()"
        f" WHERE username = $1 RETURNING {ACCOUNT_COLUMNS}",
        username, role, password_hash, disabled)
    assert row is not None
    return AccountRow.from_record(row)


async def delete_account(conn: Conn, username: str) -> bool:
    return await conn.fetchval("DELETE FROM accounts WHERE username = $1 RETURNING true",
                               username) is not None


async def password_hash(conn: Conn, username: str) -> tuple[str, str] | None:
    """(role, argon2 hash) of an enabled account that has a password."""
    row = await conn.fetchrow("SELECT role, password_hash FROM accounts WHERE username = $1"
                              " AND disabled_at IS NULL AND password_hash IS NOT NULL", username)
    return (row["role"], row["password_hash"]) if row else None


async def insert_token(conn: Conn, username: str, name: str, prefix: str, token_hash: bytes,
                       expires_in_days: int | None) -> TokenRow:
    row = await conn.fetchrow(
        "INSERT INTO api_tokens (id, username, name, prefix, token_hash, expires_at)"
        " VALUES ($1, $2, $3, $4, $5,"
        "  now() + make_interval(days => $6::int))"
        f" RETURNING {TOKEN_COLUMNS}", uuid.uuid4(), username, name, prefix, token_hash,
        expires_in_days)
    assert row is not None
    return TokenRow.from_record(row)


async def list_tokens(conn: Conn, username: str) -> list[TokenRow]:
    return await TokenRow.fetch(
        conn, f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE username = $1"
        " ORDER BY created_at, name", username)


async def revoke_token(conn: Conn, username: str, token_id: uuid.UUID) -> TokenRow | None:
    row = await conn.fetchrow(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())"
        f" WHERE username = $1 AND id = $2 RETURNING {TOKEN_COLUMNS}", username, token_id)
    return TokenRow.from_record(row) if row else None


async def token_owner(conn: Conn, token_hash: bytes) -> TokenOwner | None:
    """The enabled account a live token (not revoked, not expired) belongs to."""
    row = await conn.fetchrow(
        "SELECT t.id, t.prefix, a.username, a.role,"
        " coalesce(t.last_used_at < now() - interval '1 minute', true) AS stale"
        " FROM api_tokens t JOIN accounts a ON a.username = t.username"
        " WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND a.disabled_at IS NULL"
        " AND (t.expires_at IS NULL OR t.expires_at > now())", token_hash)
    return TokenOwner(row["id"], row["prefix"], row["username"], row["role"],
                      row["stale"]) if row else None


async def touch_token(conn: Conn, token_id: uuid.UUID) -> None:
    await conn.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = $1", token_id)
