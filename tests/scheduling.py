"""The test plays the dispatcher: it asks casestore for deliveries, takes the attempts casestore
hands out, and says how each went. So casestore's schedule is tested on its own, step by step,
against the real Postgres and RabbitMQ."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiohttp

from services.dispatcher.consumers import CONSUMER
from shared.event_payloads import (
    Attempt,
    CaseChanged,
    DeliveryAttempted,
    DeliveryDue,
    DeliveryRequested,
    RecordedRequest,
    Verdict,
)
from shared.events import DELIVERY_ATTEMPTED, DELIVERY_DUE, DELIVERY_REQUESTED, Envelope, new_event
from shared.settings import Settings
from tests.helpers import names, publish_raw
from tests.stack import Stack


def verdict_of(status: int | None) -> Verdict:
    """What the dispatcher's sender makes of an answer (tests/test_outgoing_sender.py)."""
    if status is None or status in (408, 429) or status >= 500:
        return "retry"
    if 200 <= status < 300:
        return "succeeded"
    return "gone" if status == 410 else "final"


def snapshot(case: dict[str, Any]) -> CaseChanged:
    return CaseChanged(case_id=case["id"], case_number=case["case_number"], status=case["status"],
                       data=case["data"], creator=case["creator"],
                       created_at=case["created_at"], updated_at=case["updated_at"],
                       version=case["version"], author="test")


def attempt(number: int, status: int | None, body: str | None = "{}",
            error: str | None = None) -> Attempt:
    return Attempt(id=uuid.uuid4(), number=number, started_at=datetime.now(UTC),
                   duration_ms=12.5,
                   request=RecordedRequest(method="POST", url="https://crm.example/hook",
                                           headers={"Authorization": "Basic ***"},
                                           body='{"caseNumber":1}'),
                   response_status=status, response_body=body if status else None, error=error)


@dataclass
class PlayedDispatcher:
    settings: Settings
    queue: aio_pika.abc.AbstractQueue
    # Attempts of other tests' automations (still due when this test began) are not its own.
    automations: set[uuid.UUID] = field(default_factory=set)

    async def request(self, automation: dict[str, Any], case: dict[str, Any], *,
                      once: bool = False, times: int = 1) -> uuid.UUID:
        """Ask for a delivery as the dispatcher does when `automation` fires for `case`."""
        delivery_id = uuid.uuid4()
        self.automations.add(uuid.UUID(automation["id"]))
        request = DeliveryRequested(delivery_id=delivery_id,
                                    automation_id=automation["id"], event_id=uuid.uuid4(),
                                    webhook_id=f"msg_{delivery_id.hex}", case=snapshot(case),
                                    once=once)
        # One request per message, as before requests travelled together: casestore still
        # reads that form (messages queued across an upgrade), and every test here uses it.
        # A repeat is a new message with the same delivery, as after a dispatcher crash.
        await publish_raw(self.settings, DELIVERY_REQUESTED, [
            new_event(DELIVERY_REQUESTED, request, form_id=automation["form_id"],
                      case_id=request.case.case_id).to_bytes() for _ in range(times)])
        return delivery_id

    async def due(self, within: float = 10.0) -> DeliveryDue:
        """The next attempt casestore hands out."""
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            message = await self.queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.02)
            elif message.routing_key == DELIVERY_DUE:
                due = DeliveryDue.model_validate(Envelope.from_bytes(message.body).data)
                if due.automation_id in self.automations:
                    return due
        raise AssertionError("no attempt was handed out")

    async def dues(self, count: int, within: float = 10.0) -> list[DeliveryDue]:
        return [await self.due(within) for _ in range(count)]

    async def none_due(self, wait: float = 1.0) -> None:
        """Nothing is handed out for `wait` seconds (a negative check, so it has to wait)."""
        try:
            due = await self.due(within=wait)
        except AssertionError:
            return
        raise AssertionError(f"attempt {due.number} of {due.delivery_id} was handed out")

    async def report(self, due: DeliveryDue, status: int | None, *,
                     verdict: Verdict | None = None, retry_after: float | None = None,
                     values: dict[str, Any] | None = None, body: str = "{}",
                     times: int = 1, limit: int | None = None) -> DeliveryAttempted:
        """Say how the attempt went, as the dispatcher would after sending it (with its limit
        for the endpoint, if given)."""
        report = outcome(due, status, verdict=verdict, retry_after=retry_after, values=values,
                         body=body).model_copy(update={"limit": limit})
        event = new_event(DELIVERY_ATTEMPTED, report, form_id=due.form_id,
                          case_id=due.case.case_id if due.case else None)
        await publish_raw(self.settings, DELIVERY_ATTEMPTED, [event.to_bytes()] * times)
        return report


def outcome(due: DeliveryDue, status: int | None, *, verdict: Verdict | None = None,
            retry_after: float | None = None, values: dict[str, Any] | None = None,
            body: str = "{}") -> DeliveryAttempted:
    """The dispatcher's report of an attempt answered with `status` (None: no answer)."""
    return DeliveryAttempted(
        delivery_id=due.delivery_id, automation_id=due.automation_id,
        attempt=attempt(due.number, status, body=body,
                        error=None if status else "timeout after 10s"),
        verdict=verdict or verdict_of(status), retry_after=retry_after, values=values or {})


async def playing(settings: Settings, stack: Stack) -> AsyncIterator[PlayedDispatcher]:
    """The session's dispatcher stopped, the test taking its part."""
    await stack.stop("dispatcher")
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(names(settings).queue(CONSUMER))
            await queue.purge()
            yield PlayedDispatcher(settings, queue)
            await queue.purge()
    finally:
        await stack.start("dispatcher")


async def shown(api: aiohttp.ClientSession, delivery_id: uuid.UUID,
                state: str | None = None, within: float = 10.0) -> dict[str, Any]:
    """The delivery as the API shows it, once it is in `state` (any, if None)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        async with api.get(f"/api/deliveries/{delivery_id}") as resp:
            body: dict[str, Any] = await resp.json() if resp.status == 200 else {}
        if (body and (state is None or body["state"] == state)) \
                or asyncio.get_running_loop().time() > deadline:
            assert body, f"delivery {delivery_id} was never recorded"
            assert state is None or body["state"] == state, body
            return body
        await asyncio.sleep(0.05)
