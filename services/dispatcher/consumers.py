"""The dispatcher's consumer: case events fire automations; due attempts are sent."""

from collections.abc import Awaitable, Callable

import structlog

from services.dispatcher.deliveries import Dependencies, on_due, request_deliveries
from services.dispatcher.rules import fires
from shared.event_payloads import CaseChanged, DeliveryDue
from shared.events import CASE_DELETED, DELIVERY_DUE, Envelope

log = structlog.get_logger(__name__)

CONSUMER = "dispatcher"


async def on_case_event(deps: Dependencies, envelope: Envelope) -> None:
    if envelope.type == CASE_DELETED or envelope.form_id is None:
        return  # deletion never fires an automation
    # The rules first: most events are of forms without automations, and need no more parsing.
    revision = envelope.data.get("form_revision")
    rules = await deps.rules.get(envelope.form_id, revision if isinstance(revision, int) else 0)
    if rules is None or not rules.automations:
        return  # no automation, or the form was deleted after the event
    case = envelope.payload(CaseChanged)
    if case.skip_triggers:
        log.info("automations_skipped", reason="skiptriggers", case_id=str(case.case_id))
        return
    if case.automation_depth > deps.settings.automation_max_depth:
        log.warning("automation_chain_bounded", case_id=str(case.case_id),
                    depth=case.automation_depth, limit=deps.settings.automation_max_depth)
        return
    firing = [a for a in rules.automations
              # A write made from an automation's answer never fires that automation again.
              if a.id != case.source_automation_id
              # A timer is one automation's; no other fires on it.
              and (case.timer is None or a.id == case.timer.automation_id)
              and fires(a.definition, envelope.type, case, envelope.form_id)]
    if firing:
        await request_deliveries(deps, envelope, case, firing, rules.revision)


def handler_for(deps: Dependencies) -> Callable[[Envelope], Awaitable[None]]:
    async def handle(envelope: Envelope) -> None:
        if envelope.type == DELIVERY_DUE:
            on_due(deps, envelope.payload(DeliveryDue))
        else:
            await on_case_event(deps, envelope)

    return handle
