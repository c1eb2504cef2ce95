"""Idempotency-Keys of incoming webhooks: the first command to claim a key creates the case."""

import uuid
from datetime import datetime

from services.casestore.repo import Conn

KeyClaim = tuple[str, uuid.UUID, str, datetime]


async def claim(conn: Conn, claims: list[KeyClaim]) -> set[uuid.UUID]:
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
