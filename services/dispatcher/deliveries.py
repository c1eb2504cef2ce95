"""One delivery: build the request, send it with retries, record it, hand back the answer."""

import asyncio
import uuid
from dataclasses import dataclass

import aiohttp
import asyncpg
import structlog

from services.dispatcher.content import Target, build_content
from services.dispatcher.repo import Automation
from services.dispatcher.request import build_request
from services.dispatcher.rules_cache import RulesCache
from services.dispatcher.sender import DeliveryOutcome, Sender
from shared import broker
from shared.automations import response_values
from shared.errors import DependencyUnavailable
from shared.events import (
    CASE_RESPONSE_DATA,
    DELIVERY_RECORDED,
    CaseResponseData,
    DeliveryRecorded,
    new_event,
)
from shared.settings import Settings

log = structlog.get_logger(__name__)

DELIVERY_NAMESPACE = uuid.UUID("0b6c2f4e-8d1a-4f57-9a3e-5c7d9e1f2a3b")


def delivery_id_for(event_id: uuid.UUID, automation_id: uuid.UUID) -> uuid.UUID:
    """Deterministic, so a redelivered event is the same delivery (and the same webhook-id)."""
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{event_id}:{automation_id}")


def webhook_id_for(delivery_id: uuid.UUID) -> str:
    return f"msg_{delivery_id.hex}"


@dataclass(frozen=True)
class Dispatch:
    """What a delivery needs from the running dispatcher."""

    settings: Settings
    pool: asyncpg.Pool
    publisher: broker.Publisher
    sender: Sender
    casestore: aiohttp.ClientSession
    rules: RulesCache


async def claim_once(dispatch: Dispatch, automation_id: uuid.UUID, case_id: uuid.UUID,
                     delivery_id: uuid.UUID) -> bool:
    """Ask casestore (the only writer) whether this delivery owns the automation's one firing."""
    try:
        async with dispatch.casestore.post(
                f"/api/automations/{automation_id}/claims",
                json={"case_id": str(case_id), "delivery_id": str(delivery_id)}) as resp:
            if resp.status == 404:
                return False  # the automation was deleted meanwhile
            if resp.status != 200:
                raise DependencyUnavailable(f"claim answered {resp.status}: {await resp.text()}")
            return bool((await resp.json())["granted"])
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DependencyUnavailable(f"casestore unreachable for a once-claim: {exc!r}") from exc


async def send(dispatch: Dispatch, automation: Automation, target: Target,
               attempts: int | None = None) -> DeliveryOutcome:
    """Build and send; `attempts` overrides the configured number (a test send uses 1)."""
    definition = automation.definition
    request = build_request(definition.action.settings,
                            build_content(definition, target, dispatch.settings))
    settings = definition.action.settings
    return await dispatch.sender.deliver(
        request, secret=automation.secret, webhook_id=webhook_id_for(target.delivery_id),
        attempts=attempts or settings.attempts, timeout=settings.timeout)


async def deliver_and_record(dispatch: Dispatch, automation: Automation, target: Target,
                             event_id: uuid.UUID) -> None:
    """Send, then publish the record (and any response data) with confirms before returning.

    The caller acknowledges its event only after this returns, so a crash anywhere in here
    means the event comes back and the same delivery (same webhook-id) is sent again.
    """
    outcome = await send(dispatch, automation, target)
    case, form_id = target.case, target.form.id
    record = DeliveryRecorded(
        delivery_id=target.delivery_id, automation_id=automation.id, case_id=case.case_id,
        form_id=form_id, event_id=event_id, webhook_id=webhook_id_for(target.delivery_id),
        state=outcome.state, attempts=outcome.attempts)
    events = [new_event(DELIVERY_RECORDED, record, form_id=form_id, case_id=case.case_id,
                        causation_id=str(event_id))]
    values = {}
    if outcome.state == "succeeded" and outcome.response_json is not None:
        values = response_values(automation.definition, outcome.response_json)
    if values:
        answer = CaseResponseData(case_id=case.case_id, automation_id=automation.id,
                                  delivery_id=target.delivery_id, values=values,
                                  automation_depth=target.automation_depth)
        events.append(new_event(CASE_RESPONSE_DATA, answer, form_id=form_id,
                                case_id=case.case_id, causation_id=str(event_id)))
    await asyncio.gather(*(dispatch.publisher.publish(e) for e in events))
    last = outcome.attempts[-1] if outcome.attempts else None
    log.info("delivery_recorded", automation_id=str(automation.id), case_id=str(case.case_id),
             delivery_id=str(target.delivery_id), state=outcome.state,
             attempts=len(outcome.attempts), status=last.response_status if last else None,
             response_fields=sorted(values))
