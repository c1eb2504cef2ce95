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
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_before_delay, wait_exponential

from services.dispatcher.content import Delivery, build_content
from services.dispatcher.repo import Automation, Reader
from services.dispatcher.request import build_request
from services.dispatcher.rules_cache import RulesCache
from services.dispatcher.sender import Sender, Sent
from shared import broker
from shared.automations import response_values
from shared.errors import DependencyUnavailable
from shared.events import (
    DELIVERY_ATTEMPTED,
    DELIVERY_REQUESTED,
    CaseChanged,
    DeliveryAttempted,
    DeliveryDue,
    DeliveryRequested,
    Envelope,
    new_event,
)
from shared.settings import Settings

log = structlog.get_logger(__name__)

REMEMBERED_ATTEMPTS = 100_000
DELIVERY_NAMESPACE = uuid.UUID("0b6c2f4e-8d1a-4f57-9a3e-5c7d9e1f2a3b")


def delivery_id_for(event_id: uuid.UUID, automation_id: uuid.UUID) -> uuid.UUID:
    """Deterministic, so a redelivered event is the same delivery (and the same webhook-id)."""
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{event_id}:{automation_id}")


def webhook_id_for(delivery_id: uuid.UUID) -> str:
    return f"msg_{delivery_id.hex}"


@dataclass
class InFlight:
    """The attempts this process is sending; on shutdown they may finish within the grace."""

    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Attempts begun here lately: an attempt message that comes back after a lost connection
    # (its ack lost with it) is not sent a second time by the process that sent it.
    begun: OrderedDict[tuple[uuid.UUID, int], None] = field(default_factory=OrderedDict)

    def start(self, key: tuple[uuid.UUID, int], work: Coroutine[Any, Any, None]) -> None:
        if key in self.begun:
            work.close()
            log.info("attempt_already_begun", delivery_id=str(key[0]), number=key[1])
            return
        self.begun[key] = None
        if len(self.begun) > REMEMBERED_ATTEMPTS:
            self.begun.popitem(last=False)
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # casestore hands the attempt out again when its lease runs out.
            log.error("attempt_failed", error=repr(error), exc_info=error)

    async def drain(self, grace_seconds: float) -> None:
        if not self.tasks:
            return
        _, unfinished = await asyncio.wait(set(self.tasks), timeout=grace_seconds)
        for task in unfinished:
            task.cancel()
        if unfinished:
            log.warning("shutdown_with_attempts_in_flight", count=len(unfinished),
                        note="casestore hands them out again when their lease runs out")
            await asyncio.wait(unfinished)


@dataclass(frozen=True)
class Dependencies:
    """What the dispatcher's handlers use of the running process: settings, the database
    reader, the publisher, the HTTP sender, the rules cache and the attempts in flight."""

    settings: Settings
    reader: Reader
    publisher: broker.Publisher
    sender: Sender
    rules: RulesCache
    in_flight: InFlight


async def request_deliveries(deps: Dependencies, envelope: Envelope, case: CaseChanged,
                             automations: list[Automation]) -> None:
    """Hand the deliveries these automations cause to casestore; returns once confirmed."""
    requests = []
    for automation in automations:
        delivery_id = delivery_id_for(envelope.id, automation.id)
        requests.append(new_event(DELIVERY_REQUESTED, DeliveryRequested(
            delivery_id=delivery_id, automation_id=automation.id, event_id=envelope.id,
            webhook_id=webhook_id_for(delivery_id), case=case,
            once=automation.definition.once), form_id=envelope.form_id, case_id=case.case_id,
            causation_id=str(envelope.id)))
    await asyncio.gather(*(deps.publisher.publish(r) for r in requests))


async def send(deps: Dependencies, automation: Automation, delivery: Delivery, number: int) -> Sent:
    """Build the request from the case and the automation as it is now, and send it once."""
    definition = automation.definition
    request = build_request(definition.action.settings,
                            build_content(definition, delivery, deps.settings))
    return await deps.sender.send(
        request, secrets=automation.signing_secrets(datetime.now(UTC)),
        webhook_id=webhook_id_for(delivery.delivery_id), number=number,
        timeout=definition.action.settings.timeout)


def on_due(deps: Dependencies, due: DeliveryDue) -> None:
    """Start the attempt and return: the message is acknowledged while the request runs."""
    deps.in_flight.start((due.delivery_id, due.number), attempt(deps, due))


async def attempt(deps: Dependencies, due: DeliveryDue) -> None:
    rules = await deps.rules.get(due.form_id, due.form_revision)
    automation = rules.automation(due.automation_id) if rules is not None else None
    if rules is None or automation is None:
        # Disabled or deleted since casestore handed it out: it hands it out again if the
        # automation comes back.
        log.info("attempt_of_inactive_automation", delivery_id=str(due.delivery_id))
        return
    timeout = timedelta(seconds=automation.definition.action.settings.timeout)
    if datetime.now(UTC) + timeout > due.lease_until:
        log.info("attempt_arrived_too_late", delivery_id=str(due.delivery_id), number=due.number,
                 note="casestore hands it out again")
        return
    delivery = Delivery(automation_id=automation.id, delivery_id=due.delivery_id, case=due.case,
                        form=rules.form, automation_depth=due.case.automation_depth)
    sent = await send(deps, automation, delivery, due.number)
    values = (response_values(automation.definition, sent.response_json)
              if sent.response_json is not None else {})
    report = DeliveryAttempted(
        delivery_id=due.delivery_id, automation_id=automation.id, attempt=sent.attempt,
        verdict=sent.verdict, retry_after=sent.retry_after, values=values,
        automation_depth=due.case.automation_depth)
    await _report(deps, new_event(DELIVERY_ATTEMPTED, report, form_id=due.form_id,
                                  case_id=due.case.case_id), due.lease_until)
    _log(due, sent, values)


async def _report(deps: Dependencies, event: Envelope, lease_until: datetime) -> None:
    """Publish the outcome, through a broker outage as long as the lease lasts; after that
    casestore sends the attempt again anyway."""
    seconds = max(1.0, (lease_until - datetime.now(UTC)).total_seconds())
    try:
        async for trying in AsyncRetrying(
                retry=retry_if_exception_type(DependencyUnavailable), reraise=True,
                stop=stop_before_delay(seconds), wait=wait_exponential(0.5, max=10)):
            with trying:
                await deps.publisher.publish(event)
    except DependencyUnavailable:
        log.warning("attempt_outcome_not_reported", event_id=str(event.id))


def _log(due: DeliveryDue, sent: Sent, values: dict[str, Any]) -> None:
    level = log.info if sent.verdict == "succeeded" else log.warning
    level("delivery_attempted", automation_id=str(due.automation_id),
          delivery_id=str(due.delivery_id), case_id=str(due.case.case_id), number=due.number,
          verdict=sent.verdict, status=sent.attempt.response_status, error=sent.attempt.error,
          response_fields=sorted(values))
