"""The dispatcher's consumer: case events fire automations; replay requests resend deliveries."""

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from services.dispatcher import repo
from services.dispatcher.content import Target
from services.dispatcher.deliveries import (
    Dispatch,
    claim_once,
    deliver_and_record,
    delivery_id_for,
)
from services.dispatcher.repo import Automation
from services.dispatcher.rules import fires
from shared.consumer import is_redelivery
from shared.events import (
    CASE_DELETED,
    DELIVERY_REPLAY_REQUESTED,
    CaseChanged,
    DeliveryReplayRequested,
    Envelope,
)
from shared.forms import FormDefinition

log = structlog.get_logger(__name__)

CONSUMER = "dispatcher"


def case_snapshot(row: asyncpg.Record, author: str) -> CaseChanged:
    """A stored case as an event payload without changes (for replays and test sends)."""
    return CaseChanged(case_id=row["id"], case_number=row["case_number"], status=row["status"],
                       data=row["data"], creator=row["creator"], created_at=row["created_at"],
                       updated_at=row["updated_at"], version=row["version"], author=author)


async def _all(jobs: list[Awaitable[None]]) -> None:
    """Run every delivery to its end (one slow receiver never holds up another), then fail if
    any failed, so the event is redelivered only after nothing of it is still in flight."""
    results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _fire(dispatch: Dispatch, automation: Automation, envelope: Envelope,
                case: CaseChanged, form: FormDefinition) -> None:
    delivery_id = delivery_id_for(envelope.id, automation.id)
    # An event that comes back after a crash may have been delivered before: don't resend that.
    if is_redelivery() and await repo.delivery_succeeded(dispatch.pool, delivery_id):
        log.info("delivery_already_succeeded", automation_id=str(automation.id),
                 delivery_id=str(delivery_id))
        return
    if automation.definition.once and not await claim_once(dispatch, automation.id,
                                                           case.case_id, delivery_id):
        log.info("automation_once_already_fired", automation_id=str(automation.id),
                 case_id=str(case.case_id))
        return
    target = Target(automation_id=automation.id, delivery_id=delivery_id, case=case,
                    form=form, automation_depth=case.automation_depth)
    await deliver_and_record(dispatch, automation, target, envelope.id)


async def on_case_event(dispatch: Dispatch, envelope: Envelope) -> None:
    if envelope.type == CASE_DELETED or envelope.form_id is None:
        return  # deletion never fires an automation
    # The rules first: most events are of forms without automations, and need no more parsing.
    revision = envelope.data.get("form_revision")
    rules = await dispatch.rules.get(envelope.form_id,
                                     revision if isinstance(revision, int) else 0)
    if rules is None or not rules.automations:
        return  # no automation, or the form was deleted after the event
    case = CaseChanged.model_validate(envelope.data)
    if case.skip_triggers:
        log.info("automations_skipped", reason="skiptriggers", case_id=str(case.case_id))
        return
    if case.automation_depth > dispatch.settings.automation_max_depth:
        log.warning("automation_chain_bounded", case_id=str(case.case_id),
                    depth=case.automation_depth, limit=dispatch.settings.automation_max_depth)
        return
    candidates = [a for a in rules.automations
                  # A write made from an automation's answer never fires that automation again.
                  if a.id != case.source_automation_id
                  and fires(a.definition, envelope.type, case, envelope.form_id)]
    await _all([_fire(dispatch, a, envelope, case, rules.form) for a in candidates])


async def on_replay(dispatch: Dispatch, envelope: Envelope) -> None:
    request = DeliveryReplayRequested.model_validate(envelope.data)
    delivery = await repo.delivery(dispatch.pool, request.delivery_id)
    automation = await repo.automation(dispatch.pool, request.automation_id)
    row = await repo.case(dispatch.pool, request.case_id)
    form = await repo.form(dispatch.pool, row["form_id"]) if row else None
    if delivery is None or automation is None or row is None or form is None:
        log.warning("replay_impossible", delivery_id=str(request.delivery_id),
                    reason="the delivery, its automation or its case no longer exists")
        return
    # The current case, sent under the original delivery id: receivers deduplicate by it.
    target = Target(automation_id=automation.id, delivery_id=request.delivery_id,
                    case=case_snapshot(row, "replay"), form=form)
    await deliver_and_record(dispatch, automation, target, delivery["event_id"])


def handler_for(dispatch: Dispatch) -> Callable[[Envelope], Awaitable[None]]:
    async def handle(envelope: Envelope) -> None:
        if envelope.type == DELIVERY_REPLAY_REQUESTED:
            await on_replay(dispatch, envelope)
        else:
            await on_case_event(dispatch, envelope)

    return handle
