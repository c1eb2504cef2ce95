"""casestore's consumer: case commands, delivery records and receivers' answers, each once.

A case command and an answer record their event id in processed_events in the same
transaction as their effect, so a redelivered message finds its id taken and changes nothing.
Delivery work needs no such record: each delivery and attempt is written once by its own id.
An attempt reported before its delivery is recorded (the request applied by another casestore
replica at the same moment, or held through an outage) is applied again after a pause, for up
to CASEWIRE_DELIVERY_LEASE_MARGIN_SECONDS; dropped, it would be sent again at its lease's end.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter

from services.casestore import cases, delivery_work
from services.casestore.outbox import PublishAtCommit
from services.casestore.repo import Conn
from services.casestore.repo import forms as form_rows
from services.casestore.repo import idempotency as idempotency_rows
from services.casestore.repo import outbox as outbox_rows
from services.casestore.responses import write_response_data
from services.casestore.scheduler import hand_out_now
from shared.batcher import Batcher
from shared.errors import PermanentMessageError
from shared.event_payloads import (
    CaseCreateRequested,
    CaseResponseData,
    DeliveryAttempted,
    DeliveryReports,
    DeliveryRequested,
    DeliveryRequests,
)
from shared.events import (
    CASE_CREATE_REQUESTED,
    CASE_RESPONSE_DATA,
    DELIVERY_ATTEMPTED,
    DELIVERY_REQUESTED,
    Envelope,
)
from shared.form_values import validate_case_data
from shared.forms import FormDefinition
from shared.settings import Settings

log = structlog.get_logger(__name__)

CONSUMER = "casestore"
# Bounded in practice by the consumer's prefetch: only that many commands are ever in hand.
BATCH_LIMIT = 500
CreateRequest = tuple[Envelope, CaseCreateRequested]

COMMANDS_APPLIED = Counter("casewire_commands_applied_total",
                           "Events casestore applied: cases created, deliveries taken on and "
                           "settled, receivers' answers written")
DUPLICATES_SKIPPED = Counter("casewire_duplicates_skipped_total",
                             "Events casestore had applied before (a redelivery, or a retry "
                             "with an Idempotency-Key already used), so changed nothing")


def _checked(envelope: Envelope, command: CaseCreateRequested,
             forms: dict[str, FormDefinition]) -> dict[str, Any] | PermanentMessageError:
    """The data to store, or why the command can never be applied.

    casestore owns the forms, so it checks what it stores. Against the form revision ingest
    validated with, any problem is the command's own. A form changed since then (the command
    waited in the queue) must not cost a case its sender was told was accepted: what still
    fits is stored, the rest is logged, and mandatory fields are not asked again. A command
    that names no revision (forged, or from before revisions) claims no form change: it is
    checked against the current form like one of its revision.
    """
    form = forms.get(envelope.form_id or "")
    if form is None:
        return PermanentMessageError(f"form {envelope.form_id} no longer exists")
    strict = command.form_revision in (None, form.revision)
    data, errors = validate_case_data(
        form, command.data, first_section_only=True,
        check_mandatory=strict and not command.skip_validate)
    if errors and strict:
        against = "the current form (the command names no form revision)" \
            if command.form_revision is None else f"form revision {form.revision}"
        return PermanentMessageError(f"does not fit {against}: "
                                     + "; ".join(f"{e.field}: {e.code}" for e in errors))
    for error in errors:
        log.warning("command_value_dropped_form_changed", field=error.field, code=error.code)
    return data


async def _holding_their_keys(conn: Conn, requests: list[CreateRequest],
                              fresh: set[uuid.UUID]) -> set[uuid.UUID]:
    """The fresh commands that may create a case: those without an Idempotency-Key, and per key
    the first to claim it while no unexpired claim holds it. A retry of a created case (another
    command, another event id) thus makes nothing, whenever it comes and through any ingest.
    """
    claims: dict[str, idempotency_rows.KeyClaim] = {}
    for envelope, command in requests:
        key = command.idempotency_key
        if key is not None and envelope.id in fresh:
            claims.setdefault(key.scope, (key.scope, envelope.id, key.body_hash, key.expires_at))
    if not claims:
        return fresh
    holders = await idempotency_rows.claim(
        conn, [claims[s] for s in sorted(claims)])
    keyed = {e.id for e, c in requests if c.idempotency_key is not None}
    return (fresh - keyed) | holders


class ReportBeforeItsDelivery(Exception):
    """Attempts reported before their delivery was recorded: applied again after a pause."""

    def __init__(self, attempts: list[str]):
        super().__init__(f"attempts {', '.join(attempts)} of deliveries not recorded yet")
        self.attempts = attempts


# Pauses before a report whose delivery is not there yet is applied again, doubling.
EARLY_FIRST_PAUSE, EARLY_MOST_PAUSE = 0.1, 5.0


def _changed(requests: list[DeliveryRequested], reports: list[DeliveryAttempted],
             work: delivery_work.Round) -> bool:
    """Whether an event's delivery work changed anything."""
    return (any(r.delivery_id not in work.existing for r in requests)
            or any(r.attempt.id in work.recorded for r in reports))


class CommandConsumer:
    """Applies each event once: by its processed-event row, committed with its effect, or by
    the ids its delivery work is written under."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, at_commit: PublishAtCommit):
        self._pool = pool
        self._settings = settings
        self._at_commit = at_commit
        self._creates: Batcher[CreateRequest, int | None] = Batcher(
            "case-creates", self._create_many, max_size=BATCH_LIMIT)
        self._deliveries: Batcher[Envelope, bool] = Batcher(
            "delivery-work", self._deliveries_many, max_size=BATCH_LIMIT)
        self._handlers: dict[str, Callable[[Envelope], Awaitable[None]]] = {
            CASE_CREATE_REQUESTED: self.create_requested,
            DELIVERY_REQUESTED: self.delivery_work,
            DELIVERY_ATTEMPTED: self.delivery_work,
            CASE_RESPONSE_DATA: self.response_data,
        }

    async def __call__(self, envelope: Envelope) -> None:
        handler = self._handlers.get(envelope.type)
        if handler is None:
            raise PermanentMessageError(f"casestore does not handle {envelope.type}")
        await handler(envelope)

    @contextlib.asynccontextmanager
    async def _first_time(self, envelope: Envelope) -> AsyncIterator[Conn | None]:
        """A connection in a transaction that has claimed the event id; None for a duplicate."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await outbox_rows.mark_processed(conn, CONSUMER, [envelope.id]):
                DUPLICATES_SKIPPED.inc()
                log.info("duplicate_event_skipped")
                yield None
            else:
                yield conn

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Handle events while the block runs (case creations are written in batches)."""
        async with self._creates.running(), self._deliveries.running():
            yield

    async def create_requested(self, envelope: Envelope) -> None:
        command = envelope.payload(CaseCreateRequested)
        if envelope.form_id is None:
            raise PermanentMessageError("case.create_requested without form_id")
        created = await self._creates.submit((envelope, command))
        if created is None:
            DUPLICATES_SKIPPED.inc()
            log.info("duplicate_event_skipped")
        else:
            COMMANDS_APPLIED.inc()
            log.info("case_created", case_id=str(envelope.id), case_number=created,
                     form_id=envelope.form_id)

    async def _create_many(self, requests: list[CreateRequest]) -> list[int | Exception | None]:
        """Create the cases of many commands in one transaction; a case's id is its command's.

        Outcomes: the case number, None for a command already applied (a redelivery), or the
        error for a command that cannot be applied (dead-lettered, so an operator can recover
        it): its form is gone, or its data breaks the very form it was checked against.
        """
        async with self._pool.acquire() as conn, self._at_commit.transaction(conn):
            form_ids = sorted({e.form_id for e, _ in requests if e.form_id is not None})
            forms = await form_rows.get_forms(conn, form_ids)
            checked = {e.id: _checked(e, c, forms) for e, c in requests}
            live = [(e, c) for e, c in requests if isinstance(checked[e.id], dict)]
            fresh = await outbox_rows.mark_processed(conn, CONSUMER, [e.id for e, _ in live])
            fresh = await _holding_their_keys(conn, live, fresh)
            by_form: dict[str, dict[uuid.UUID, cases.NewCase]] = {}
            for envelope, command in live:
                data = checked[envelope.id]
                if envelope.id in fresh and envelope.form_id is not None and isinstance(data, dict):
                    by_form.setdefault(envelope.form_id, {})[envelope.id] = cases.NewCase(
                        data, creator=command.creator, case_id=envelope.id,
                        skip_triggers=command.skip_triggers, causation_id=str(envelope.id),
                        correlation_id=envelope.correlation_id)
            numbers: dict[uuid.UUID, int] = {}
            # Counter rows are locked in one order, so concurrent writers cannot deadlock.
            for form_id in sorted(by_form):
                new = list(by_form[form_id].values())
                rows = await cases.create_cases(conn, forms[form_id], new)
                numbers.update((r.id, r.case_number) for r in rows)
        return [outcome if isinstance(outcome := checked[e.id], Exception) else numbers.get(e.id)
                for e, _ in requests]

    async def delivery_work(self, envelope: Envelope) -> None:
        waited, pause = 0.0, EARLY_FIRST_PAUSE
        while True:
            try:
                changed = await self._deliveries.submit(envelope)
                break
            except ReportBeforeItsDelivery as early:
                # Its request is on its way (applied by another casestore, or held through an
                # outage); dropped, the report would leave the attempt to be sent again when
                # its lease runs out. By then it is sent again anyway: wait no longer.
                if waited >= self._settings.delivery_lease_margin_seconds:
                    log.warning("report_of_unknown_delivery_dropped", attempts=early.attempts)
                    return
                await asyncio.sleep(pause)
                waited, pause = waited + pause, min(pause * 2, EARLY_MOST_PAUSE)
        if changed:
            COMMANDS_APPLIED.inc()
        else:
            DUPLICATES_SKIPPED.inc()
            log.info("duplicate_event_skipped")

    async def _deliveries_many(self, envelopes: list[Envelope]) -> list[bool | Exception]:
        """Take on requested deliveries and settle attempts, many in one transaction.

        Outcomes: True once applied, False for an event that changed nothing: its deliveries
        existed and its attempts were recorded already (a redelivery), or it came twice in
        the batch.
        """
        async with self._pool.acquire() as conn, self._at_commit.transaction(conn):
            taken: dict[uuid.UUID, tuple[list[DeliveryRequested], list[DeliveryAttempted]]] = {}
            for envelope in envelopes:
                if envelope.id in taken:
                    continue  # the same message twice in one batch: once
                if envelope.type == DELIVERY_REQUESTED:
                    requested = envelope.payload(DeliveryRequests).requests
                    # A first attempt that ended before its request went out.
                    taken[envelope.id] = (requested, [r.report for r in requested
                                                      if r.report is not None])
                else:
                    taken[envelope.id] = ([], envelope.payload(DeliveryReports).reports)
            requests = [r for asked, _ in taken.values() for r in asked]
            work = await delivery_work.apply(
                conn, requests, [(r, str(event_id)) for event_id, (_, told) in taken.items()
                                 for r in told], self._settings)
            await hand_out_now(conn, delivery_work.may_send_more(requests, work),
                               self._settings)
        outcomes: list[bool | Exception] = []
        seen: set[uuid.UUID] = set()
        for envelope in envelopes:
            early = [str(r.attempt.id) for r in taken[envelope.id][1]
                     if r.attempt.id in work.early]
            outcomes.append(ReportBeforeItsDelivery(early) if early else
                            envelope.id not in seen and _changed(*taken[envelope.id], work))
            seen.add(envelope.id)
        return outcomes

    async def response_data(self, envelope: Envelope) -> None:
        answer = envelope.payload(CaseResponseData)
        async with self._first_time(envelope) as conn:
            if conn is None:
                return
            await write_response_data(conn, answer, causation_id=str(envelope.id))
        COMMANDS_APPLIED.inc()
