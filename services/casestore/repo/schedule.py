"""The delivery schedule: deliveries waiting, attempts handed out, endpoints' health."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.casestore.repo import Conn
from services.casestore.repo.deliveries import (
    NewAttempt,
    attempt_columns,
    insert_attempts,
    insert_attempts_sql,
)
from shared.event_payloads import DeliveryRequested

NOTIFY_CHANNEL = "casewire_deliveries"
# Work that is due, in two kinds, each read through its own partial index by automation:
# waiting for its (next) attempt, or handed out and never answered. Never one OR of the two:
# the planner then takes a bitmap scan of both indexes, which never marks the entries of
# deliveries that have moved on as dead, and every round reads all of them again (the
# index of attempts in flight gains one per delivery until a vacuum).
WAITING = "d.state IN ('pending', 'retrying') AND d.next_attempt_at <= now()"
LOST = "d.state = 'sending' AND d.lease_until <= now()"


async def wake_scheduler(conn: Conn) -> None:
    """Sent when the transaction commits: something may be due now."""
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A requested delivery as casestore keeps it, under its automation's terms of the time."""

    request: DeliveryRequested
    automation_name: str
    schedule: str
    attempts: int

    # Its first attempt succeeded before the request went out: recorded as succeeded at once.
    succeeded: bool = False

    def values(self) -> tuple[Any, ...]:
        r = self.request
        return (r.delivery_id, r.automation_id, r.case.case_id, r.form_id, r.event_id,
                r.webhook_id, self.automation_name, self.schedule, r.case.model_dump(mode="json"),
                self.attempts, r.first_attempt_until, r.correlation_id, self.succeeded)


# New deliveries from unnest($1..$13) (`NewDelivery.values`), returning the ids inserted.
INSERT_REQUESTED = (
    "INSERT INTO deliveries (id, automation_id, case_id, form_id, event_id, webhook_id, state,"
    " automation_name, schedule, case_snapshot, attempts_allowed, next_attempt_at,"
    " attempts_made, lease_until, correlation_id)"
    " SELECT n.id, n.automation_id, n.case_id, n.form_id, n.event_id, n.webhook_id,"
    " CASE WHEN n.succeeded THEN 'succeeded' WHEN n.out_until IS NULL THEN 'pending'"
    "   ELSE 'sending' END, n.name, n.schedule, n.snapshot, n.attempts,"
    " CASE WHEN NOT n.succeeded THEN now() END, (n.out_until IS NOT NULL)::int,"
    " CASE WHEN NOT n.succeeded THEN n.out_until END, n.correlation_id"
    " FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[], $6::text[],"
    " $7::text[], $8::text[], $9::jsonb[], $10::int[], $11::timestamptz[], $12::text[],"
    " $13::bool[])"
    " AS n(id, automation_id, case_id, form_id, event_id, webhook_id, name, schedule,"
    " snapshot, attempts, out_until, correlation_id, succeeded)"
    " ON CONFLICT (id) DO NOTHING RETURNING id")


async def insert_requested(conn: Conn, deliveries: list[NewDelivery],
                           attempts: list[NewAttempt]) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """New deliveries, each due at once (or its first attempt out already, until its lease, or
    succeeded already), and attempts, of these deliveries or others, in one statement (one
    round trip fewer per case than two: a first attempt's report often comes with its
    request). A delivery that exists already (a repeated request) is left as it is; so is an
    attempt. Returns the ids of the deliveries inserted and of the attempts added."""
    if not deliveries:
        return set(), await insert_attempts(conn, attempts)
    columns = [list(column) for column in zip(*(d.values() for d in deliveries), strict=True)]
    if not attempts:
        return {row["id"] for row in await conn.fetch(INSERT_REQUESTED, *columns)}, set()
    rows = await conn.fetch(
        f"WITH inserted AS ({INSERT_REQUESTED}), added AS ({insert_attempts_sql(14, 'inserted')})"
        " SELECT true AS delivery, id FROM inserted UNION ALL SELECT false, id FROM added",
        *columns, *attempt_columns(attempts))
    return ({r["id"] for r in rows if r["delivery"]}, {r["id"] for r in rows if not r["delivery"]})



# The endpoint (health row h) is healthy and succeeded in the last second: another success
# need not be written, so a busy endpoint's row is not rewritten per delivery
# (`last_success_at` is kept to the second).
SUCCEEDED_LATELY = (
    "coalesce(h.state = 'closed' AND h.consecutive_failures = 0 AND h.times_opened = 0"
    " AND h.open_until IS NULL AND h.failing_since IS NULL"
    " AND h.last_success_at > now() - interval '1 second', false) AS succeeded_lately")


async def terms_and_health(conn: Conn, automation_id: uuid.UUID) -> asyncpg.Record | None:
    """The automation's definition and whether its endpoint succeeded lately (None: no such
    automation); the endpoint's health row is made on its first delivery."""
    return await conn.fetchrow(
        "WITH made AS (INSERT INTO endpoint_health (automation_id)"
        "  SELECT id FROM automations WHERE id = $1 ON CONFLICT DO NOTHING)"
        f" SELECT a.definition, h.concurrency_limit, {SUCCEEDED_LATELY}"
        " FROM automations a LEFT JOIN endpoint_health h ON h.automation_id = a.id"
        " WHERE a.id = $1", automation_id)


async def lock_due_endpoints(conn: Conn, limit: int,
                             only: list[uuid.UUID] | None = None) -> list[asyncpg.Record]:
    """Endpoints of enabled automations (of `only`, if given) with due work whose circuit lets
    an attempt through, locked for this transaction (SKIP LOCKED: several casestore replicas,
    and the consumer's transactions, share them without handing out anything twice)."""
    return list(await conn.fetch(
        "SELECT h.automation_id, h.state, h.open_until, h.window_start, h.window_count,"
        " h.concurrency_limit, coalesce(a.form_id, '') AS form_id,"
        " a.definition->'action'->'settings' AS settings,"
        " coalesce(f.revision, 0) AS form_revision,"
        " (SELECT count(*) FROM deliveries s WHERE s.automation_id = h.automation_id"
        "   AND s.state = 'sending' AND s.lease_until > now()) AS in_flight,"
        " now() AS now"
        " FROM endpoint_health h JOIN automations a ON a.id = h.automation_id AND a.enabled"
        # An operational webhook has no form (services/casestore/operational.py).
        " LEFT JOIN forms f ON f.id = a.form_id"
        " WHERE (h.state <> 'open' OR h.open_until <= now())"
        " AND ($2::uuid[] IS NULL OR h.automation_id = ANY($2))"
        " AND (EXISTS (SELECT 1 FROM deliveries d"
        f"   WHERE d.automation_id = h.automation_id AND {WAITING})"
        "  OR EXISTS (SELECT 1 FROM deliveries d"
        f"   WHERE d.automation_id = h.automation_id AND {LOST}))"
        " ORDER BY h.automation_id LIMIT $1 FOR UPDATE OF h SKIP LOCKED", limit, only))


async def hand_out(conn: Conn, automation_id: uuid.UUID, room: int,
                   lease_seconds: float) -> list[asyncpg.Record]:
    """Up to `room` due deliveries of one automation, oldest due first, marked `sending`.

    A lost attempt (its lease ran out) goes out again under the same number; a new one counts.
    """
    return list(await conn.fetch(
        "WITH waiting AS (SELECT d.id, d.next_attempt_at AS due_at FROM deliveries d"
        f"  WHERE d.automation_id = $1 AND {WAITING}"
        "  ORDER BY d.next_attempt_at, d.id LIMIT $2 FOR UPDATE SKIP LOCKED),"
        " lost AS (SELECT d.id, d.lease_until AS due_at FROM deliveries d"
        f"  WHERE d.automation_id = $1 AND {LOST}"
        "  ORDER BY d.lease_until, d.id LIMIT $2 FOR UPDATE SKIP LOCKED),"
        " due AS (SELECT id FROM (SELECT * FROM waiting UNION ALL SELECT * FROM lost) u"
        "  ORDER BY due_at, id LIMIT $2)"
        " UPDATE deliveries d SET state = 'sending', updated_at = now(),"
        " lease_until = now() + make_interval(secs => $3),"
        " attempts_made = d.attempts_made + (d.state <> 'sending')::int"
        " FROM due WHERE d.id = due.id"
        " RETURNING d.id, d.automation_id, d.form_id, d.webhook_id, d.attempts_made,"
        " d.case_snapshot, d.payload, d.lease_until, d.correlation_id",
        automation_id, room, lease_seconds))


async def count_in_window(conn: Conn, automation_id: uuid.UUID, window_start: datetime,
                          count: int) -> None:
    await conn.execute("UPDATE endpoint_health SET window_start = $2, window_count = $3"
                       " WHERE automation_id = $1", automation_id, window_start, count)


async def half_open(conn: Conn, automation_id: uuid.UUID) -> None:
    await conn.execute("UPDATE endpoint_health SET state = 'half_open', state_since = now()"
                       " WHERE automation_id = $1 AND state = 'open'", automation_id)


async def deliveries_for_outcome(conn: Conn, delivery_ids: list[uuid.UUID]
                                 ) -> dict[uuid.UUID, dict[str, Any]]:
    """The deliveries these outcomes are for, locked in one order (so concurrent settlers
    cannot deadlock) and only against other updates (an attempt's foreign key check may go
    on); a dict each, so settling can note what it decided, with whether its endpoint
    succeeded lately and when the attempt was handed out (its row's last update: a delivery
    is not touched while its attempt is out)."""
    if not delivery_ids:
        return {}
    rows = await conn.fetch(
        "SELECT d.id, d.automation_id, d.case_id, d.state, d.schedule, d.attempts_made,"
        " d.attempts_allowed, d.updated_at AS handed_out_at, h.concurrency_limit,"
        f" {SUCCEEDED_LATELY} FROM deliveries d"
        " LEFT JOIN endpoint_health h ON h.automation_id = d.automation_id"
        " WHERE d.id = ANY($1::uuid[]) ORDER BY d.id FOR NO KEY UPDATE OF d", delivery_ids)
    return {row["id"]: dict(row) for row in rows}


async def settle(conn: Conn, outcomes: list[tuple[uuid.UUID, str, float | None]]) -> None:
    """Each delivery's new state, and when its next attempt is due (None: no next attempt)."""
    if not outcomes:
        return
    ids, states, waits = map(list, zip(*outcomes, strict=True))
    await conn.execute(
        "UPDATE deliveries d SET state = s.state, lease_until = NULL, updated_at = now(),"
        " next_attempt_at = CASE WHEN s.wait IS NULL THEN NULL"
        "   ELSE now() + make_interval(secs => s.wait) END"
        " FROM unnest($1::uuid[], $2::text[], $3::float8[]) AS s(id, state, wait)"
        " WHERE d.id = s.id", ids, states, waits)


@dataclass(frozen=True, slots=True)
class HealthRow:
    """An endpoint's health: `closed` (healthy), `open` (paused until `open_until`) or
    `half_open` (one probe decides). The defaults are a new endpoint's."""

    state: str = "closed"
    state_since: datetime | None = None
    consecutive_failures: int = 0
    times_opened: int = 0
    open_until: datetime | None = None
    failing_since: datetime | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    concurrency_limit: int | None = None

    def to_api(self) -> dict[str, Any]:
        times = ("open_until", "failing_since", "last_success_at", "last_failure_at")
        return {"state": self.state, "consecutive_failures": self.consecutive_failures,
                **{key: value.isoformat() if (value := getattr(self, key)) else None
                   for key in times}, "concurrency_limit": self.concurrency_limit}


HEALTH_COLUMNS = ("state, state_since, consecutive_failures, times_opened, open_until,"
                  " failing_since, last_success_at, last_failure_at, concurrency_limit")


async def health(conn: Conn, automation_id: uuid.UUID) -> HealthRow | None:
    row = await conn.fetchrow(
        f"SELECT {HEALTH_COLUMNS} FROM endpoint_health WHERE automation_id = $1", automation_id)
    return HealthRow(**row) if row else None


async def health_of(conn: Conn, ids: list[uuid.UUID]) -> dict[uuid.UUID, HealthRow]:
    rows = await conn.fetch(
        f"SELECT automation_id, {HEALTH_COLUMNS} FROM endpoint_health"
        " WHERE automation_id = ANY($1::uuid[])", ids)
    return {r["automation_id"]: HealthRow(**{k: v for k, v in r.items() if k != "automation_id"})
            for r in rows}


async def record_success(conn: Conn, automation_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The endpoints answered well; those whose circuit this closes (it was not closed)."""
    rows = await conn.fetch(
        "WITH was AS (SELECT automation_id, state FROM endpoint_health"
        "  WHERE automation_id = ANY($1::uuid[]) FOR UPDATE)"
        " UPDATE endpoint_health h SET state = 'closed', consecutive_failures = 0,"
        " state_since = CASE WHEN was.state = 'closed' THEN h.state_since ELSE now() END,"
        " times_opened = 0, open_until = NULL, failing_since = NULL, last_success_at = now()"
        " FROM was WHERE h.automation_id = was.automation_id"
        " RETURNING h.automation_id, was.state <> 'closed' AS resumed", automation_ids)
    return [r["automation_id"] for r in rows if r["resumed"]]


async def record_limits(conn: Conn, limits: dict[uuid.UUID, int]) -> None:
    """The limits dispatchers reported of these endpoints."""
    if limits:
        await conn.execute(
            "UPDATE endpoint_health h SET concurrency_limit = l.value"
            " FROM unnest($1::uuid[], $2::int[]) AS l(automation_id, value)"
            " WHERE h.automation_id = l.automation_id", list(limits), list(limits.values()))


async def record_failure(conn: Conn, automation_id: uuid.UUID, counts: bool,
                         open_for: float | None) -> asyncpg.Record:
    """Note a failure; one that `counts` adds to the failures in a row, and `open_for` seconds
    opens the circuit. Returns the health after."""
    row = await conn.fetchrow(
        "UPDATE endpoint_health SET consecutive_failures = consecutive_failures + $3::int,"
        " last_failure_at = now(), failing_since = coalesce(failing_since, now()),"
        " state = CASE WHEN $2::float8 IS NULL THEN state ELSE 'open' END,"
        " state_since = CASE WHEN $2::float8 IS NULL THEN state_since ELSE now() END,"
        " times_opened = times_opened + ($2::float8 IS NOT NULL)::int,"
        " open_until = CASE WHEN $2::float8 IS NULL THEN open_until"
        "   ELSE now() + make_interval(secs => $2) END"
        " WHERE automation_id = $1 RETURNING state, consecutive_failures, times_opened,"
        " failing_since, now() - failing_since AS failing_for", automation_id, open_for, counts)
    assert row is not None
    return row


async def disable_automation(conn: Conn, automation_id: uuid.UUID,
                             reason: str) -> asyncpg.Record | None:
    """Disable it with the reason (None if it was not enabled)."""
    return await conn.fetchrow(
        "UPDATE automations SET enabled = false, disabled_reason = $2, disabled_at = now(),"
        " updated_at = now() WHERE id = $1 AND enabled RETURNING id, form_id",
        automation_id, reason)
