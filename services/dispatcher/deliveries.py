"""Deliveries on the dispatcher's side: request them when automations fire, send each attempt
casestore hands out, and report how it went.

The dispatcher keeps no delivery state: casestore schedules every attempt (its waits, its
retries, the cap per endpoint, the circuit breaker) and decides what an answer means for the
delivery. An attempt message is acknowledged on arrival, so a slow receiver holds no broker
slot; if this process dies mid-attempt, casestore hands the attempt out again when its lease
runs out.
"""

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_before_delay, wait_exponential

from services.dispatcher import metrics
from services.dispatcher.bundling import Bundler
from services.dispatcher.content import Delivery, build_content
from services.dispatcher.in_flight import InFlight
from services.dispatcher.repo import Automation, Reader
from services.dispatcher.request import OutgoingRequest, build_request
from services.dispatcher.rules_cache import RulesCache
from services.dispatcher.sender import Sender, Sent
from shared.automations import response_values
from shared.consumer import is_redelivery
from shared.errors import DependencyUnavailable
from shared.event_payloads import CaseChanged, DeliveryAttempted, DeliveryDue, DeliveryRequested
from shared.events import Envelope
from shared.logging import bound_correlation_id
from shared.settings import Settings

log = structlog.get_logger(__name__)

DELIVERY_NAMESPACE = uuid.UUID("0b6c2f4e-8d1a-4f57-9a3e-5c7d9e1f2a3b")


def delivery_id_for(event_id: uuid.UUID, automation_id: uuid.UUID) -> uuid.UUID:
    """Deterministic, so a redelivered event is the same delivery (and the same webhook-id)."""
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{event_id}:{automation_id}")


def webhook_id_for(delivery_id: uuid.UUID) -> str:
    return f"msg_{delivery_id.hex}"


@dataclass(frozen=True)
class Dependencies:
    """What the dispatcher's handlers use of the running process: settings, the database
    reader, what it sends casestore (requests and reports, many to a message), the HTTP
    sender, the rules cache and the attempts in flight."""

    settings: Settings
    reader: Reader
    requests: Bundler[DeliveryRequested]
    reports: Bundler[DeliveryAttempted]
    sender: Sender
    rules: RulesCache
    in_flight: InFlight


def _sends_first_itself(deps: Dependencies, automation: Automation) -> bool:
    """The first attempt may go straight out (one hop less than through casestore's schedule)
    when this dispatcher can start it soon (`InFlight.take_first`, which then holds it) and
    nothing else must be settled first: a `once` claim, a rate limit, or whether casestore
    has the delivery already (a case event that came back may have been delivered)."""
    settings = automation.definition.action.settings
    # take_first last: it counts the attempt as held, so only once everything else allows it.
    return (not automation.definition.once and settings.max_per_second is None
            and not is_redelivery()
            and deps.in_flight.take_first(automation.id, settings.max_in_flight))


async def request_deliveries(deps: Dependencies, envelope: Envelope, case: CaseChanged,
                             automations: list[Automation], form_revision: int) -> None:
    """Hand the deliveries these automations cause to casestore; returns once confirmed.

    A first attempt the dispatcher sends itself starts only after casestore has the delivery,
    so its outcome never arrives before the delivery it belongs to; but one the endpoint
    should answer at once starts first, and its report goes with the request (`Handoff`).
    """
    requests, first, handoffs = [], [], {}
    for automation in automations:
        delivery_id = delivery_id_for(envelope.id, automation.id)
        lease = None
        if _sends_first_itself(deps, automation):
            lease = datetime.now(UTC) + timedelta(seconds=(
                automation.definition.action.settings.timeout
                + deps.settings.delivery_lease_margin_seconds))
            first.append(DeliveryDue(
                delivery_id=delivery_id, automation_id=automation.id,
                form_id=envelope.form_id or "", form_revision=form_revision,
                webhook_id=webhook_id_for(delivery_id), number=1, case=case,
                lease_until=lease))
            wait = deps.settings.report_wait_seconds
            if wait and deps.in_flight.ends_within(automation.id, wait / 2):
                handoffs[delivery_id] = Handoff.new()
        requests.append(DeliveryRequested(
            delivery_id=delivery_id, automation_id=automation.id, event_id=envelope.id,
            webhook_id=webhook_id_for(delivery_id), case=case, form_id=envelope.form_id or "",
            once=automation.definition.once, first_attempt_until=lease,
            correlation_id=bound_correlation_id()))
    later = [due for due in first if due.delivery_id not in handoffs]
    try:
        # Begun here already (its case event fired again): its outcome never reached casestore,
        # so casestore is to hand it out at once.
        again = {due.delivery_id for due in first if due.delivery_id in handoffs
                 and not on_due(deps, due, taken=True, handoff=handoffs[due.delivery_id])}
        if handoffs:
            await asyncio.wait([h.ready for h in handoffs.values()],
                               timeout=deps.settings.report_wait_seconds)
        requests = [r.model_copy(update={"first_attempt_until": None}) if r.delivery_id in again
                    else _with_report(r, handoffs.get(r.delivery_id)) for r in requests]
        await asyncio.gather(*(deps.requests.send(r) for r in requests))
    except BaseException:
        for due in later:
            deps.in_flight.release(due.automation_id)
        for handoff in handoffs.values():
            handoff.confirm(False)
        raise
    for handoff in handoffs.values():
        handoff.confirm(True)
    metrics.REPORTED_WITH_REQUEST.inc(sum(r.report is not None for r in requests))
    for due in later:
        on_due(deps, due, taken=True)


@dataclass
class Handoff:
    """A first attempt begun before its request went out. If it ends in time its report goes
    with the request (`offer`); later, the report follows once the request is confirmed, and
    is dropped if the request was not (the case event comes back, and with it the delivery).
    """

    ready: asyncio.Future[DeliveryAttempted | None]
    confirmed: asyncio.Future[bool]
    open: bool = True  # the request has not gone out yet

    @classmethod
    def new(cls) -> "Handoff":
        loop = asyncio.get_running_loop()
        return cls(loop.create_future(), loop.create_future())

    def offer(self, report: DeliveryAttempted | None) -> bool:
        """Whether the request takes the report along (None: the attempt made none)."""
        if not self.open:
            return False
        self.ready.set_result(report)
        return report is not None

    def take(self) -> DeliveryAttempted | None:
        self.open = False
        return self.ready.result() if self.ready.done() else None

    def confirm(self, published: bool) -> None:
        self.open = False
        if not self.confirmed.done():
            self.confirmed.set_result(published)


def _with_report(request: DeliveryRequested, handoff: Handoff | None) -> DeliveryRequested:
    report = handoff.take() if handoff is not None else None
    return request if report is None else request.model_copy(update={"report": report})


async def send(deps: Dependencies, automation: Automation, delivery: Delivery, number: int) -> Sent:
    """Build the request from the case and the automation as it is now, and send it once."""
    definition = automation.definition
    request = build_request(definition.action.settings,
                            build_content(definition, delivery, deps.settings))
    return await _send(deps, automation, request, delivery.delivery_id, number)


async def _send(deps: Dependencies, automation: Automation, request: OutgoingRequest,
                delivery_id: uuid.UUID, number: int) -> Sent:
    return await deps.sender.send(
        request, secrets=automation.signing_secrets(datetime.now(UTC)),
        webhook_id=webhook_id_for(delivery_id), number=number,
        timeout=automation.definition.action.settings.timeout)


def on_due(deps: Dependencies, due: DeliveryDue, *, taken: bool = False,
           handoff: Handoff | None = None) -> bool:
    """Start the attempt and return (the message is acknowledged while the request runs);
    False if this process began it before."""
    key = (due.delivery_id, due.number, due.lease_until)
    started = deps.in_flight.start(due.automation_id, key, attempt(deps, due, handoff),
                                   taken=taken)
    if not started and handoff is not None:
        handoff.offer(None)  # nothing to wait for
    return started


async def attempt(deps: Dependencies, due: DeliveryDue, handoff: Handoff | None = None) -> None:
    try:
        report = await _make_attempt(deps, due)
    except BaseException:
        if handoff is not None:
            handoff.offer(None)
        raise
    if handoff is not None:
        if handoff.offer(report):
            return  # it goes to casestore with its request
        if report is not None and not await handoff.confirmed:
            log.info("attempt_report_dropped", delivery_id=str(due.delivery_id),
                     note="its request did not go out; the case event comes back")
            return
    if report is not None:
        await _report(deps, report, due.lease_until)


async def _make_attempt(deps: Dependencies, due: DeliveryDue) -> DeliveryAttempted | None:
    """Send the attempt; how it went, or None if it was not sent."""
    found = await _what_to_send(deps, due)
    if found is None:
        # Disabled or deleted since casestore handed it out: it hands it out again if the
        # automation comes back.
        log.info("attempt_of_inactive_automation", delivery_id=str(due.delivery_id))
        return None
    automation, request = found
    # The request must end within the attempt's lease, or casestore sends it again meanwhile.
    settings = automation.definition.action.settings
    latest_start = due.lease_until - timedelta(seconds=settings.timeout)
    deps.in_flight.limit(automation.id, settings.max_in_flight)  # as the automation is now
    async with deps.in_flight.slot(automation.id, latest_start) as started:
        if started is None:
            log.info("attempt_found_no_room_in_its_lease", delivery_id=str(due.delivery_id),
                     number=due.number, note="casestore hands it out again")
            return None
        with metrics.IN_FLIGHT.track_inprogress():
            sent = await _send(deps, automation, request(), due.delivery_id, due.number)
        deps.in_flight.answered(automation.id, started, sent)
    metrics.record(sent, str(automation.id), due.case.updated_at if due.case else None)
    values = (response_values(automation.definition, sent.response_json)
              if sent.response_json is not None and due.case is not None else {})
    _log(due, sent, values)
    return DeliveryAttempted(
        delivery_id=due.delivery_id, automation_id=automation.id, attempt=sent.attempt,
        verdict=sent.verdict, retry_after=sent.retry_after, values=values,
        automation_depth=due.case.automation_depth if due.case else 0,
        correlation_id=bound_correlation_id(), limit=deps.in_flight.limit(automation.id).current)


async def _what_to_send(deps: Dependencies, due: DeliveryDue
                        ) -> tuple[Automation, Callable[[], OutgoingRequest]] | None:
    """The automation as it is now, and how to build the request: from the case through its
    content, or an operational event's payload as it is (None: no such enabled automation)."""
    if due.case is None:
        automation = await deps.reader.automation(due.automation_id)
        if automation is None or not automation.enabled or due.payload is None:
            return None
        payload = due.payload
        return automation, lambda: build_request(automation.definition.action.settings, payload)
    rules = await deps.rules.get(due.form_id, due.form_revision)
    found = rules.automation(due.automation_id) if rules is not None else None
    if rules is None or found is None:
        return None
    delivery = Delivery(automation_id=found.id, delivery_id=due.delivery_id, case=due.case,
                        form=rules.form, automation_depth=due.case.automation_depth)
    return found, lambda: build_request(found.definition.action.settings, build_content(
        found.definition, delivery, deps.settings))


async def _report(deps: Dependencies, report: DeliveryAttempted, lease_until: datetime) -> None:
    """Report the outcome, through a broker outage as long as the lease lasts; after that
    casestore sends the attempt again anyway."""
    seconds = max(1.0, (lease_until - datetime.now(UTC)).total_seconds())
    try:
        async for trying in AsyncRetrying(
                retry=retry_if_exception_type(DependencyUnavailable), reraise=True,
                stop=stop_before_delay(seconds), wait=wait_exponential(0.5, max=10)):
            with trying:
                await deps.reports.send(report)
    except DependencyUnavailable:
        log.warning("attempt_outcome_not_reported", delivery_id=str(report.delivery_id),
                    number=report.attempt.number)


def _log(due: DeliveryDue, sent: Sent, values: dict[str, Any]) -> None:
    level = log.info if sent.verdict == "succeeded" else log.warning
    level("delivery_attempted", automation_id=str(due.automation_id),
          delivery_id=str(due.delivery_id),
          case_id=str(due.case.case_id) if due.case else None, number=due.number,
          verdict=sent.verdict, status=sent.attempt.response_status, error=sent.attempt.error,
          response_fields=sorted(values))
