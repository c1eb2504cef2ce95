"""An event the outbox may be publishing a second time says so, and no shortcut meant for a
first delivery is taken on it (issue 24, item 11: a Postgres crash sent webhooks twice).

A publish at commit whose delete failed (the database crashed after the broker's confirm) left
its row to the relay, which sent the case event again. The dispatcher took that copy for a new
event and sent the first attempt itself, while casestore, holding the delivery from the first
copy, handed the same attempt out: two sends, both attempt #1.
"""

import uuid
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import orjson
import pytest

from services.dispatcher.deliveries import delivery_id_for
from shared.broker import MAYBE_REPEAT
from shared.events import CASE_CREATED, DELIVERY_DUE, Envelope
from shared.settings import Settings
from tests.helpers import (
    AutomationFactory,
    EventTap,
    FormFactory,
    call,
    names,
    new_case,
    tap_events,
    until,
    webhook_action,
)
from tests.receiver import Receiver
from tests.stack import Stack


async def test_a_row_left_by_a_publish_at_commit_goes_out_marked_as_a_possible_repeat(
        settings: Settings, stack: Stack, db: asyncpg.Connection) -> None:
    event = Envelope(type="test.maybe-repeat", data={"n": 1}, correlation_id="repeat")
    plain = Envelope(type="test.maybe-repeat", data={"n": 2}, correlation_id="repeat")
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(names(settings).events)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="test.maybe-repeat")
        # As a publish at commit leaves a row whose delete failed (its grace over), and as the
        # relay's own rows are.
        await db.execute(
            "INSERT INTO outbox (event_id, routing_key, envelope, created_at, relay_after)"
            " VALUES ($1, $2, $3::jsonb, now() - interval '20 s', now() - interval '5 s'),"
            " ($4, $2, $5::jsonb, now(), now())", event.id, event.type,
            event.to_bytes().decode(), plain.id, plain.to_bytes().decode())
        marks: dict[str, Any] = {}

        async def both() -> bool:
            message = await queue.get(fail=False, no_ack=True)
            if message is not None:
                marks[str(message.message_id)] = (message.headers or {}).get(MAYBE_REPEAT)
            return len(marks) == 2

        await until(both, 20)
    assert marks == {str(event.id): True, str(plain.id): None}


async def case_created_event(api: aiohttp.ClientSession, events: EventTap,
                             form_id: str) -> dict[str, Any]:
    case = await new_case(api, form_id)
    return await events.next(lambda e: e["type"] == CASE_CREATED and e["case_id"] == case["id"])


async def publish_copy(settings: Settings, event: dict[str, Any], revision: int,
                       maybe_repeat: bool) -> uuid.UUID:
    """The case event again under a new id, at the form's current revision; its id."""
    copy = {**event, "id": str(uuid.uuid4()), "data": {**event["data"],
                                                        "form_revision": revision}}
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(names(settings).events)
        await exchange.publish(aio_pika.Message(
            orjson.dumps(copy), message_id=copy["id"],
            headers={MAYBE_REPEAT: True} if maybe_repeat else None,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=CASE_CREATED)
    return uuid.UUID(copy["id"])


async def test_the_dispatcher_sends_no_first_attempt_itself_for_a_possible_repeat(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver, db: asyncpg.Connection) -> None:
    """A marked case event takes the path that deduplicates: its delivery is requested, and
    casestore hands the attempt out. An unmarked one (the control) is sent at once."""
    hook = await make_form()
    url = receiver.endpoint()
    automation = await make_automation(hook["form_id"], url, enabled=False,
                                       action=webhook_action(url))
    async with tap_events(settings, CASE_CREATED) as events:
        event = await case_created_event(api, events, hook["form_id"])
    await call(api, "POST", f"/api/automations/{automation['id']}/enable", 200)
    revision = await db.fetchval("SELECT revision FROM forms WHERE id = $1", hook["form_id"])
    async with tap_events(settings, DELIVERY_DUE) as handed_out:
        marked = await publish_copy(settings, event, revision, maybe_repeat=True)
        plain = await publish_copy(settings, event, revision, maybe_repeat=False)
        await receiver.wait_for(url, 2, within=20)
        automation_id = uuid.UUID(automation["id"])
        due = await handed_out.next(lambda e: e["data"]["automation_id"] == automation["id"])
        assert due["data"]["delivery_id"] == str(delivery_id_for(marked, automation_id))
        # The control: sent by the dispatcher itself, never handed out by casestore.
        with pytest.raises(AssertionError, match="no matching event"):
            await handed_out.next(lambda e: e["data"]["automation_id"] == automation["id"],
                                  within=2)
    assert {r.headers["webhook-id"] for r in receiver.at(url)} == {
        f"msg_{delivery_id_for(d, automation_id).hex}" for d in (marked, plain)}
