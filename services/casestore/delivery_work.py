"""Deliveries as casestore's durable work: taken on when an automation fires, settled attempt
by attempt as the dispatcher reports how each went.

What an answer means: a 2xx ends the delivery (its response data is written in the same
transaction); a retryable failure waits for the next attempt on the automation's schedule, if
any is left; any other failure ends it. Every failure counts against the endpoint's health
(endpoint_health.py: its circuit breaker, and disabling after a 410 or days of failures).
"""

import uuid
from dataclasses import dataclass, field

import structlog

from services.casestore import endpoint_health, operational
from services.casestore.repo import Conn
from services.casestore.repo import automations as automation_rows
from services.casestore.repo import deliveries as delivery_rows
from services.casestore.repo import schedule as schedule_rows
from services.casestore.responses import write_response_data
from shared.automations import AutomationDefinition
from shared.event_payloads import CaseResponseData, DeliveryAttempted, DeliveryRequested
from shared.logging import bound_context
from shared.schedule import (
    attempts_allowed,
    retry_delay,
)
from shared.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Terms:
    """What a new delivery of an automation is kept under: its name, schedule and attempts."""

    name: str
    schedule: str
    attempts: int


@dataclass(slots=True)
class Round:
    """One transaction's delivery work: the automations it read once for all its events (None:
    deleted), and the endpoints whose last attempt in it succeeded, written at `finish` (a
    failure of the same endpoint writes them first, so the order holds)."""

    terms: dict[uuid.UUID, Terms | None] = field(default_factory=dict)
    succeeded: set[uuid.UUID] = field(default_factory=set)
    # Endpoints healthy with a success in the last second when read: their successes in this
    # round change nothing worth a write, unless a failure comes first.
    succeeded_lately: set[uuid.UUID] = field(default_factory=set)
    # Deliveries recorded as succeeded when taken on (their first attempt's report came with
    # the request), by id, with their case: their report is settled already.
    settled: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    # Endpoints with an attempt that was in flight and ended here: they may have room now.
    freed: set[uuid.UUID] = field(default_factory=set)
    # Requested deliveries that existed already, and the attempts recorded now: what tells a
    # repeated event (it changes nothing) from a new one.
    existing: set[uuid.UUID] = field(default_factory=set)
    recorded: set[uuid.UUID] = field(default_factory=set)
    # Reported attempts of deliveries not there yet: their request is still on its way
    # (another casestore, or a message held through an outage, may be applying it).
    early: set[uuid.UUID] = field(default_factory=set)
    # Endpoints' limits as stored when read, and as the reports in this round had them.
    stored_limits: dict[uuid.UUID, int | None] = field(default_factory=dict)
    reported_limits: dict[uuid.UUID, int] = field(default_factory=dict)

    async def finish(self, conn: Conn) -> None:
        if written := self.succeeded - self.succeeded_lately:
            for resumed in await schedule_rows.record_success(conn, sorted(written)):
                await operational.emit(conn, "endpoint.resumed", {"automation_id": str(resumed)},
                                       about=resumed)
        self.succeeded.clear()
        await schedule_rows.record_limits(conn, {
            automation_id: limit for automation_id, limit in sorted(self.reported_limits.items())
            if _worth_writing(self.stored_limits.get(automation_id), limit)})
        self.reported_limits.clear()

    async def failed(self, conn: Conn, automation_id: uuid.UUID) -> None:
        """Before a failure of the endpoint is counted: its earlier successes first."""
        if automation_id in self.succeeded:
            await self.finish(conn)
        self.succeeded_lately.discard(automation_id)


async def apply(conn: Conn, requests: list[DeliveryRequested],
                reports: list[tuple[DeliveryAttempted, str]], settings: Settings) -> Round:
    """One transaction's delivery work: the requests taken on first (a report's delivery was
    requested before its attempt was sent, maybe in the same batch), then the reports settled
    in their order. Each is applied once by its own key (the delivery's id, the attempt's), so
    a repeated event changes nothing."""
    work = Round()
    first: dict[uuid.UUID, tuple[DeliveryAttempted, str]] = {}
    for report, causation_id in reports:
        first.setdefault(report.attempt.id, (report, causation_id))
    # In one order of their deliveries, as every transaction takes their locks.
    attempts = sorted(((r.delivery_id, r.attempt) for r, _ in first.values()),
                      key=lambda pair: pair[0])
    await take_on(conn, requests, attempts, work)
    await settle(conn, list(first.values()), settings, work)
    await work.finish(conn)
    return work


def _worth_writing(stored: int | None, reported: int) -> bool:
    """Only a change of a fifth or more is written: a limit growing one by one would rewrite
    a busy endpoint's row per attempt, and the window it sizes need not be exact."""
    return stored is None or abs(reported - stored) >= max(1.0, stored * 0.2)


def may_send_more(requests: list[DeliveryRequested], work: Round) -> set[uuid.UUID]:
    """The endpoints that may send more after `work`: those with a new delivery due, and
    those with an attempt in flight that ended (a first attempt the dispatcher sends itself
    makes nothing due and takes room; written as succeeded with its request, it never took
    any)."""
    return {r.automation_id for r in requests
            if r.first_attempt_until is None and r.delivery_id not in work.existing} | work.freed


async def _terms(conn: Conn, automation_id: uuid.UUID, work: Round) -> Terms | None:
    """The automation's terms, read once per transaction; its endpoint gets its health row."""
    if automation_id not in work.terms:
        row = await schedule_rows.terms_and_health(conn, automation_id)
        terms = None
        if row is not None:
            definition = AutomationDefinition.model_validate(row["definition"])
            settings = definition.action.settings
            terms = Terms(definition.name, settings.retry,
                          attempts_allowed(settings.retry, settings.attempts))
            if row["succeeded_lately"]:
                work.succeeded_lately.add(automation_id)
            work.stored_limits[automation_id] = row["concurrency_limit"]
        work.terms[automation_id] = terms
    return work.terms[automation_id]


async def take_on(conn: Conn, requests: list[DeliveryRequested],
                  attempts: list[delivery_rows.NewAttempt], work: Round) -> None:
    """Record requested deliveries as due now, and the attempts reported, in one statement.
    No delivery is recorded for a repeat, a deleted automation, or a `once` automation that
    already fired for the case; no attempt for a repeat or a delivery that does not exist."""
    new: dict[uuid.UUID, schedule_rows.NewDelivery] = {}
    for request in requests:
        terms = await _terms(conn, request.automation_id, work)
        if terms is None:
            log.info("delivery_of_deleted_automation_dropped",
                     delivery_id=str(request.delivery_id))
            continue
        if request.once:
            owner = await automation_rows.claim_once(conn, request.automation_id,
                                                     request.case.case_id, request.delivery_id)
            if owner != request.delivery_id:
                log.info("automation_once_already_fired",
                         automation_id=str(request.automation_id),
                         case_id=str(request.case.case_id))
                continue
        new.setdefault(request.delivery_id, schedule_rows.NewDelivery(
            request, terms.name, terms.schedule, terms.attempts,
            succeeded=_succeeded_at_once(request)))
    inserted, work.recorded = await schedule_rows.insert_requested(conn, list(new.values()),
                                                                   attempts)
    work.existing.update(new.keys() - inserted)
    if unrecorded := [(d, a) for d, a in attempts if a.id not in work.recorded]:
        missing = await delivery_rows.missing(conn, [d for d, _ in unrecorded])
        work.early.update(a.id for d, a in unrecorded if d in missing)
    work.settled.update((d.request.delivery_id, d.request.case.case_id) for d in new.values()
                        if d.succeeded and d.request.delivery_id in inserted)


def _succeeded_at_once(request: DeliveryRequested) -> bool:
    """The request carries its first attempt's report, and that attempt succeeded: the
    delivery is done before it is written (two statements fewer than settling it)."""
    report = request.report
    return (report is not None and request.first_attempt_until is not None
            and report.verdict == "succeeded" and report.attempt.number == 1
            and report.delivery_id == request.delivery_id)


async def settle(conn: Conn, reports: list[tuple[DeliveryAttempted, str]], settings: Settings,
                 work: Round) -> None:
    """For the attempts recorded now (each with the id of the event that reported it), decide
    in their order what comes next for each delivery and its endpoint."""
    fresh = [(r, c) for r, c in reports if r.attempt.id in work.recorded]
    if not fresh:
        return
    deliveries = await schedule_rows.deliveries_for_outcome(
        conn, sorted({r.delivery_id for r, _ in fresh if r.delivery_id not in work.settled}))
    work.succeeded_lately.update(d["automation_id"] for d in deliveries.values()
                                 if d["succeeded_lately"])
    work.stored_limits.update((d["automation_id"], d["concurrency_limit"])
                              for d in deliveries.values())
    work.reported_limits.update((r.automation_id, r.limit) for r, _ in fresh
                                if r.limit is not None)
    decided, settled = [], []
    for report, causation_id in fresh:
        if report.delivery_id in work.settled:
            settled.append((report, causation_id, work.settled[report.delivery_id],
                            "succeeded", None))
            continue
        delivery = deliveries.get(report.delivery_id)
        if (delivery is None or delivery["state"] != "sending"
                or delivery["attempts_made"] != report.attempt.number):
            continue  # a late report of an attempt handed out again since: logged, nothing more
        state, wait = "succeeded", None
        if report.verdict == "retry" and delivery["attempts_made"] < delivery["attempts_allowed"]:
            state, wait = "retrying", retry_delay(delivery["schedule"], delivery["attempts_made"],
                                                  report.retry_after, settings)
        elif report.verdict != "succeeded":
            state = "failed"
        delivery["state"] = state
        work.freed.add(report.automation_id)
        decided.append((report, causation_id, delivery["case_id"], state, wait))
    await schedule_rows.settle(conn, [(r.delivery_id, state, wait)
                                      for r, _, _, state, wait in decided])
    for report, causation_id, case_id, state, _ in settled + decided:
        if state == "failed":
            await _exhausted(conn, report, case_id)
        if report.verdict == "succeeded":
            work.succeeded.add(report.automation_id)
            await _write_answer(conn, report, case_id, causation_id)
        else:
            await work.failed(conn, report.automation_id)
            await endpoint_health.count_failure(
                conn, report, deliveries[report.delivery_id]["handed_out_at"], settings)


async def _exhausted(conn: Conn, report: DeliveryAttempted, case_id: uuid.UUID | None) -> None:
    """The delivery ended failed: tell the operational webhook."""
    attempt = report.attempt
    await operational.emit(conn, "delivery.exhausted", {
        "delivery_id": str(report.delivery_id), "automation_id": str(report.automation_id),
        "case_id": str(case_id) if case_id else None, "attempts": attempt.number,
        "last_status": attempt.response_status, "last_error": attempt.error},
        about=report.automation_id)


async def _write_answer(conn: Conn, report: DeliveryAttempted, case_id: uuid.UUID,
                        causation_id: str) -> None:
    if not report.values:
        return
    # The case update carries the correlation id the attempt was sent under.
    with bound_context(**({"correlation_id": report.correlation_id}
                          if report.correlation_id else {})):
        await write_response_data(conn, CaseResponseData(
            case_id=case_id, automation_id=report.automation_id, delivery_id=report.delivery_id,
            values=report.values, automation_depth=report.automation_depth),
            causation_id=causation_id)
