"""Every SQL statement casestore runs; callers pass the connection and own the transaction."""

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from shared.events import DeliveryRecorded, Envelope
from shared.forms import FormDefinition

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

CASE_COLUMNS = "id, form_id, case_number, status, data, creator, created_at, updated_at, version"


def _form_args(form: FormDefinition) -> tuple[Any, ...]:
    dumped = form.model_dump(mode="json")
    return form.id, form.name, dumped["sections"], dumped["fields"], form.statuses


# Forms

async def insert_form(conn: Conn, form: FormDefinition) -> None:
    await conn.execute(
        "INSERT INTO forms (id, name, sections, fields, statuses) VALUES ($1, $2, $3, $4, $5)",
        *_form_args(form))
    await conn.execute("INSERT INTO case_counters (form_id) VALUES ($1)", form.id)


async def update_form(conn: Conn, form: FormDefinition) -> bool:
    result = await conn.execute(
        "UPDATE forms SET name = $2, sections = $3, fields = $4, statuses = $5, updated_at = now()"
        " WHERE id = $1", *_form_args(form))
    return bool(result != "UPDATE 0")


async def delete_form(conn: Conn, form_id: str) -> bool:
    return bool(await conn.execute("DELETE FROM forms WHERE id = $1", form_id) != "DELETE 0")


async def lock_form_for_delete(conn: Conn, form_id: str) -> int | None:
    """Lock the form against new cases (their foreign key check waits) and count its cases.

    None if there is no such form.
    """
    if await conn.fetchval("SELECT 1 FROM forms WHERE id = $1 FOR UPDATE", form_id) is None:
        return None
    return int(await conn.fetchval("SELECT count(*) FROM cases WHERE form_id = $1", form_id))


async def get_form(conn: Conn, form_id: str, *, lock: bool = False) -> FormDefinition | None:
    sql = "SELECT * FROM forms WHERE id = $1" + (" FOR SHARE" if lock else "")
    row = await conn.fetchrow(sql, form_id)
    return FormDefinition.from_record(row) if row else None


async def get_forms(conn: Conn, form_ids: list[str]) -> dict[str, FormDefinition]:
    rows = await conn.fetch("SELECT * FROM forms WHERE id = ANY($1::text[])", form_ids)
    return {r["id"]: FormDefinition.from_record(r) for r in rows}


async def list_forms(conn: Conn) -> list[FormDefinition]:
    rows = await conn.fetch("SELECT * FROM forms ORDER BY id")
    return [FormDefinition.from_record(r) for r in rows]


# Cases

async def reserve_case_numbers(conn: Conn, form_id: str, count: int) -> int:
    """The first of `count` consecutive numbers; the counter row stays locked until commit."""
    last = await conn.fetchval(
        "UPDATE case_counters SET last_number = last_number + $2 WHERE form_id = $1"
        " RETURNING last_number", form_id, count)
    return int(last) - count + 1


NewCaseRow = tuple[uuid.UUID, str, int, str, dict[str, Any], str]


async def insert_cases(conn: Conn, rows: list[NewCaseRow]) -> list[asyncpg.Record]:
    """Insert (id, form_id, case_number, status, data, creator) rows, returned in input order."""
    inserted = await conn.fetch(
        "INSERT INTO cases (id, form_id, case_number, status, data, creator)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::jsonb[],"
        f" $6::text[]) RETURNING {CASE_COLUMNS}", *map(list, zip(*rows, strict=True)))
    by_id = {r["id"]: r for r in inserted}
    return [by_id[row[0]] for row in rows]


async def get_case(conn: Conn, case_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(f"SELECT {CASE_COLUMNS} FROM cases WHERE id = $1{suffix}", case_id)


async def list_cases(conn: Conn, form_id: str, *, status: str | None, limit: int,
                     before_number: int | None) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        f"SELECT {CASE_COLUMNS} FROM cases WHERE form_id = $1"
        " AND ($2::text IS NULL OR status = $2)"
        " AND ($3::bigint IS NULL OR case_number < $3)"
        " ORDER BY case_number DESC LIMIT $4",
        form_id, status, before_number, limit))


async def count_cases(conn: Conn, form_id: str, status: str | None) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM cases WHERE form_id = $1 AND ($2::text IS NULL OR status = $2)",
        form_id, status))


async def update_case(conn: Conn, case_id: uuid.UUID, status: str,
                      data: dict[str, Any]) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"UPDATE cases SET status = $2, data = $3, updated_at = now(), version = version + 1"
        f" WHERE id = $1 RETURNING {CASE_COLUMNS}", case_id, status, data)
    assert row is not None
    return row


async def delete_case(conn: Conn, case_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM cases WHERE id = $1", case_id)


HistoryEntry = tuple[uuid.UUID, int, str, list[dict[str, Any]]]


async def insert_history(conn: Conn, entries: list[HistoryEntry]) -> None:
    """(case_id, version, author, changes) entries."""
    await conn.executemany(
        "INSERT INTO case_history (case_id, version, author, changes) VALUES ($1, $2, $3, $4)",
        entries)


async def case_history(conn: Conn, case_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT version, author, changed_at, changes FROM case_history"
        " WHERE case_id = $1 ORDER BY id", case_id))


# Incoming webhooks, users and auth keys

WEBHOOK_COLUMNS = "id, form_id, token, enabled, authenticate_user"


async def get_webhook(conn: Conn, form_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {WEBHOOK_COLUMNS} FROM incoming_webhooks WHERE form_id = $1", form_id)


async def upsert_webhook(conn: Conn, form_id: str, token: str, enabled: bool,
                         authenticate_user: bool) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO incoming_webhooks (id, form_id, token, enabled, authenticate_user)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (form_id) DO UPDATE"
        " SET enabled = EXCLUDED.enabled, authenticate_user = EXCLUDED.authenticate_user,"
        " updated_at = now()"
        f" RETURNING {WEBHOOK_COLUMNS}", uuid.uuid4(), form_id, token, enabled, authenticate_user)
    assert row is not None
    return row


async def rotate_webhook_token(conn: Conn, form_id: str, token: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE incoming_webhooks SET token = $2, updated_at = now() WHERE form_id = $1"
        f" RETURNING {WEBHOOK_COLUMNS}", form_id, token)


async def insert_user(conn: Conn, username: str, password_hash: str, forms: list[str]) -> None:
    await conn.execute("INSERT INTO users (username, password_hash) VALUES ($1, $2)",
                       username, password_hash)
    await conn.executemany("INSERT INTO user_forms (username, form_id) VALUES ($1, $2)",
                           [(username, f) for f in forms])


async def list_users(conn: Conn) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT u.username, u.created_at,"
        " coalesce(array_agg(uf.form_id ORDER BY uf.form_id)"
        "   FILTER (WHERE uf.form_id IS NOT NULL), '{}') AS forms"
        " FROM users u LEFT JOIN user_forms uf USING (username)"
        " GROUP BY u.username, u.created_at ORDER BY u.username"))


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


# Automations and their `once` claims

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


# Deliveries and their attempts

DELIVERY_SUMMARY = (
    "SELECT d.id, d.automation_id, d.case_id, d.form_id, d.event_id, d.webhook_id, d.state,"
    " d.created_at, d.updated_at, coalesce(s.attempt_count, 0) AS attempt_count,"
    " last.response_status AS last_response_status, last.error AS last_error"
    " FROM deliveries d"
    " LEFT JOIN LATERAL (SELECT count(*) AS attempt_count FROM delivery_attempts"
    "   WHERE delivery_id = d.id) s ON true"
    " LEFT JOIN LATERAL (SELECT response_status, error FROM delivery_attempts"
    "   WHERE delivery_id = d.id ORDER BY started_at DESC, number DESC LIMIT 1) last ON true")


def _storable(value: Any) -> Any:
    """Postgres text and jsonb cannot hold U+0000; a receiver's binary answer may."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


RECORD_DELIVERY = (
    # One statement, one round trip: the delivery and its new attempts, if the automation is
    # still there (deleting an automation deletes its log, and a late record is dropped).
    "WITH automation AS (SELECT 1 FROM automations WHERE id = $2 FOR KEY SHARE),"
    " delivery AS (INSERT INTO deliveries"
    "   (id, automation_id, case_id, form_id, event_id, webhook_id, state)"
    "   SELECT $1, $2, $3, $4, $5, $6, $7 FROM automation"
    "   ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()"
    # A record that arrives after a newer one (of a replay) must not turn the state back.
    "   WHERE $8::timestamptz IS NULL OR NOT EXISTS (SELECT 1 FROM delivery_attempts a"
    "     WHERE a.delivery_id = EXCLUDED.id AND a.started_at > $8)),"
    " attempts AS (INSERT INTO delivery_attempts (id, delivery_id, number, started_at,"
    "   duration_ms, request, response_status, response_headers, response_body, error)"
    "   SELECT a.id, $1, a.number, a.started_at, a.duration_ms, a.request, a.response_status,"
    "     a.response_headers, a.response_body, a.error"
    "   FROM unnest($9::uuid[], $10::int[], $11::timestamptz[], $12::float8[], $13::jsonb[],"
    "     $14::int[], $15::jsonb[], $16::text[], $17::text[])"
    "     AS a(id, number, started_at, duration_ms, request, response_status,"
    "          response_headers, response_body, error)"
    "   WHERE EXISTS (SELECT 1 FROM automation)"
    "   ON CONFLICT (id) DO NOTHING)"
    " SELECT EXISTS (SELECT 1 FROM automation)")


async def record_delivery(conn: Conn, record: DeliveryRecorded) -> bool:
    """Upsert the delivery and add its new attempts; False if its automation no longer exists."""
    newest = max((a.started_at for a in record.attempts), default=None)
    attempts = [(a.id, a.number, a.started_at, a.duration_ms,
                 _storable(a.request.model_dump(mode="json")), a.response_status,
                 _storable(a.response_headers), _storable(a.response_body), _storable(a.error))
                for a in record.attempts]
    columns = [list(c) for c in zip(*attempts, strict=True)] if attempts else [[]] * 9
    return bool(await conn.fetchval(
        RECORD_DELIVERY, record.delivery_id, record.automation_id, record.case_id,
        record.form_id, record.event_id, record.webhook_id, record.state, newest, *columns))


async def list_deliveries(conn: Conn, *, automation_id: uuid.UUID | None,
                          case_id: uuid.UUID | None, state: str | None, limit: int,
                          before: tuple[Any, uuid.UUID] | None) -> list[asyncpg.Record]:
    """Newest first; `before` is the (created_at, id) of the previous page's last delivery."""
    created, last_id = before if before else (None, None)
    return list(await conn.fetch(
        f"{DELIVERY_SUMMARY} WHERE ($1::uuid IS NULL OR d.automation_id = $1)"
        " AND ($2::uuid IS NULL OR d.case_id = $2) AND ($3::text IS NULL OR d.state = $3)"
        " AND ($4::timestamptz IS NULL OR (d.created_at, d.id) < ($4, $5::uuid))"
        " ORDER BY d.created_at DESC, d.id DESC LIMIT $6",
        automation_id, case_id, state, created, last_id, limit))


async def get_delivery(conn: Conn, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"{DELIVERY_SUMMARY} WHERE d.id = $1", delivery_id)


async def delivery_attempts(conn: Conn, delivery_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT id, number, started_at, duration_ms, request, response_status,"
        " response_headers, response_body, error FROM delivery_attempts"
        " WHERE delivery_id = $1 ORDER BY started_at, number", delivery_id))


# Files

FILE_COLUMNS = "id, case_id, field_id, name, content_type, size, created_at"


async def insert_file(conn: Conn, file_id: uuid.UUID, case_id: uuid.UUID, field_id: str,
                      name: str, content_type: str, content: bytes) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO files (id, case_id, field_id, name, content_type, size, content)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {FILE_COLUMNS}",
        file_id, case_id, field_id, name, content_type, len(content), content)
    assert row is not None
    return row


async def delete_files_except(conn: Conn, case_id: uuid.UUID, field_id: str,
                              kept: list[uuid.UUID]) -> None:
    """Delete the field's files of the case that are not in `kept` (their bytes go with them)."""
    await conn.execute(
        "DELETE FROM files WHERE case_id = $1 AND field_id = $2 AND id <> ALL($3::uuid[])",
        case_id, field_id, kept)


async def get_file(conn: Conn, file_id: uuid.UUID, *,
                   content: bool = False) -> asyncpg.Record | None:
    columns = FILE_COLUMNS + (", content" if content else "")
    return await conn.fetchrow(f"SELECT {columns} FROM files WHERE id = $1", file_id)


# Outbox and consumer deduplication

async def insert_outbox(conn: Conn, envelopes: list[Envelope]) -> None:
    await conn.executemany(
        "INSERT INTO outbox (event_id, routing_key, envelope) VALUES ($1, $2, $3)",
        [(e.id, e.type, e.model_dump(mode="json")) for e in envelopes])


async def take_outbox(conn: Conn, limit: int) -> list[asyncpg.Record]:
    """Delete and return a batch of unsent events, oldest first; run it in a transaction and
    roll back (or restore_outbox) what could not be published. SKIP LOCKED lets several relays
    share the table.

    Each comes as the JSON text to publish, so relaying never parses an envelope.
    """
    rows = await conn.fetch(
        "DELETE FROM outbox WHERE id IN"
        " (SELECT id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, event_id, routing_key, envelope::text AS body,"
        " envelope->>'correlation_id' AS correlation_id, created_at", limit)
    return sorted(rows, key=lambda r: int(r["id"]))


def _outbox_columns(rows: list[asyncpg.Record]) -> list[list[Any]]:
    return [[r[name] for r in rows] for name in ("id", "event_id", "routing_key", "body",
                                                  "created_at")]


async def restore_outbox(conn: Conn, rows: list[asyncpg.Record]) -> None:
    """Put taken rows back unchanged (same id, so the same place in line)."""
    await conn.execute(
        "INSERT INTO outbox (id, event_id, routing_key, envelope, created_at)"
        " SELECT i, e, r, b::jsonb, c FROM unnest($1::bigint[], $2::uuid[], $3::text[],"
        " $4::text[], $5::timestamptz[]) AS t(i, e, r, b, c)", *_outbox_columns(rows))


async def park_outbox(conn: Conn, parked: list[tuple[asyncpg.Record, str]]) -> None:
    """Move taken rows the broker refuses for good aside, each with its error."""
    rows = [row for row, _ in parked]
    await conn.execute(
        "INSERT INTO outbox_parked (id, event_id, routing_key, envelope, created_at, error)"
        " SELECT i, e, r, b::jsonb, c, err FROM unnest($1::bigint[], $2::uuid[], $3::text[],"
        " $4::text[], $5::timestamptz[], $6::text[]) AS t(i, e, r, b, c, err)",
        *_outbox_columns(rows), [error for _, error in parked])


async def mark_processed(conn: Conn, consumer: str, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Record events as applied; returns those that were not already (the rest are redeliveries)."""
    rows = await conn.fetch(
        "INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::uuid[])"
        " ON CONFLICT DO NOTHING RETURNING event_id", consumer, event_ids)
    return {r["event_id"] for r in rows}


# Idempotency-Keys of incoming webhooks

KeyClaim = tuple[str, uuid.UUID, str, datetime]


async def claim_idempotency_keys(conn: Conn, claims: list[KeyClaim]) -> set[uuid.UUID]:
    """Record (scope, event id, body hash, expires at) claims, each unless an unexpired row holds
    its key; returns the event ids that hold their key now. Pass them sorted by scope: the rows
    stay locked until commit, and one order keeps concurrent writers from deadlocking."""
    rows = await conn.fetch(
        "INSERT INTO idempotency_keys (scope, event_id, body_hash, expires_at)"
        " SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[])"
        " ON CONFLICT (scope) DO UPDATE SET event_id = EXCLUDED.event_id,"
        " body_hash = EXCLUDED.body_hash, created_at = now(), expires_at = EXCLUDED.expires_at"
        " WHERE idempotency_keys.expires_at <= now() RETURNING event_id",
        *map(list, zip(*claims, strict=True)))
    return {r["event_id"] for r in rows}
