"""The transactional outbox, its parked rows, and the events each consumer has applied."""

import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.casestore.repo import Conn
from shared.db import TypedRow
from shared.events import Envelope


@dataclass(frozen=True, slots=True)
class OutboxRow(TypedRow):
    """An event taken from the outbox to publish: its envelope as the JSON text to send."""

    id: int
    event_id: uuid.UUID
    routing_key: str
    body: str
    correlation_id: str
    created_at: datetime
    # Given to a publish at commit first (relay_after later than created_at): the relay taking
    # it may be sending it a second time (the delete after the confirm failed).
    maybe_published: bool


@dataclass(frozen=True, slots=True)
class AtCommit:
    """Set (`AT_COMMIT`) while a transaction's events are to be published by casestore itself
    once it commits: they are written for the relay to take only after `grace_seconds`, and
    collected in `rows` to publish."""

    grace_seconds: float
    rows: list[OutboxRow]


NOTIFY_CHANNEL = "casewire_outbox"  # NOTIFY'd on an insert of rows the relay is to take now
AT_COMMIT: ContextVar[AtCommit | None] = ContextVar("outbox_at_commit", default=None)


async def insert_outbox(conn: Conn, envelopes: list[Envelope]) -> None:
    at_commit = AT_COMMIT.get()
    if at_commit is None:
        await conn.executemany(
            "INSERT INTO outbox (event_id, routing_key, envelope) VALUES ($1, $2, $3)",
            [(e.id, e.type, e.model_dump(mode="json")) for e in envelopes])
        return
    rows = await conn.fetch(
        "INSERT INTO outbox (event_id, routing_key, envelope, relay_after)"
        " SELECT e, r, b, now() + make_interval(secs => $4)"
        " FROM unnest($1::uuid[], $2::text[], $3::jsonb[]) AS t(e, r, b)"
        " RETURNING id, event_id, routing_key, envelope::text AS body,"
        " envelope->>'correlation_id' AS correlation_id, created_at, false AS maybe_published",
        [e.id for e in envelopes], [e.type for e in envelopes],
        [e.model_dump(mode="json") for e in envelopes], at_commit.grace_seconds)
    at_commit.rows.extend(OutboxRow.from_record(r) for r in rows)


async def settle_at_commit(conn: Conn, sent: list[int], left: list[int]) -> None:
    """Delete the rows published at commit; hand those that were not (`left`) to the relay
    at once."""
    if sent:
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", sent)
    if left:
        await conn.execute("UPDATE outbox SET relay_after = now() WHERE id = ANY($1::bigint[])"
                           " AND relay_after > now()", left)
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


async def outbox_backlog(conn: Conn) -> tuple[int, float]:
    """Rows waiting to be published (those a relay is publishing now too), and the age in
    seconds of the oldest (0 when none wait)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS waiting,"
        " COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest"
        " FROM outbox")
    assert row is not None
    return int(row["waiting"]), max(float(row["oldest"]), 0.0)


async def parked_count(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM outbox_parked"))


async def take_outbox(conn: Conn, limit: int) -> list[OutboxRow]:
    """Delete and return a batch of unsent events, oldest first; run it in a transaction and
    roll back (or restore_outbox) what could not be published. SKIP LOCKED lets several relays
    share the table.

    Each comes as the JSON text to publish, so relaying never parses an envelope.
    """
    rows = await conn.fetch(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE relay_after <= now()"
        " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, event_id, routing_key, envelope::text AS body,"
        " envelope->>'correlation_id' AS correlation_id, created_at,"
        " relay_after > created_at AS maybe_published", limit)
    return sorted((OutboxRow.from_record(r) for r in rows), key=lambda r: r.id)


def _outbox_columns(rows: list[OutboxRow]) -> list[list[Any]]:
    return [[r.id for r in rows], [r.event_id for r in rows], [r.routing_key for r in rows],
            [r.body for r in rows], [r.created_at for r in rows]]


async def restore_outbox(conn: Conn, rows: list[OutboxRow]) -> None:
    """Put taken rows back unchanged (same id, so the same place in line)."""
    await conn.execute(
        "INSERT INTO outbox (id, event_id, routing_key, envelope, created_at)"
        " SELECT i, e, r, b::jsonb, c FROM unnest($1::bigint[], $2::uuid[], $3::text[],"
        " $4::text[], $5::timestamptz[]) AS t(i, e, r, b, c)", *_outbox_columns(rows))


async def park_outbox(conn: Conn, parked: list[tuple[OutboxRow, str]]) -> None:
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
