"""The delivery log: delivery.recorded events in, list/show/replay out."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from shared.events import (
    DELIVERY_RECORDED,
    Attempt,
    DeliveryRecorded,
    DeliveryState,
    Envelope,
    RecordedRequest,
    new_event,
)
from shared.logging import bound_context
from shared.settings import Settings
from tests.conftest import EventTap, publish_raw
from tests.stack import Stack
from tests.test_admin_api import call, new_case, new_form
from tests.test_automations_api import create

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def publish(settings: Settings, event: Envelope, times: int = 1) -> None:
    """Straight onto the events exchange, as the dispatcher (or a redelivery) would."""
    await publish_raw(settings, event.type, [event.to_bytes()] * times)


async def processed(settings: Settings, event_id: uuid.UUID, within: float = 10.0) -> None:
    """Wait until casestore has applied (or deliberately skipped) the event."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        for _ in range(int(within * 20)):
            if await conn.fetchval("SELECT 1 FROM processed_events WHERE consumer = 'casestore'"
                                   " AND event_id = $1", event_id):
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise AssertionError(f"event {event_id} was never processed")


async def until(probe: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
    """Poll until `probe` returns something truthy."""
    for _ in range(int(within * 20)):
        result = await probe()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


def attempt(number: int, status: int | None, *, at: datetime = T0, error: str | None = None,
            body: str | None = '{"ok":true}') -> Attempt:
    return Attempt(
        id=uuid.uuid4(), number=number, started_at=at + timedelta(seconds=number),
        duration_ms=12.5 * number,
        request=RecordedRequest(method="POST", url="https://crm.example/hook",
                                headers={"Content-Type": "application/json",
                                         "Authorization": "Basic ***"},
                                body='{"caseNumber":1}'),
        response_status=status, response_headers={"Content-Type": "application/json"} if status
        else {}, response_body=body if status else None, error=error)


def recorded(automation: dict[str, Any], case_id: str, state: DeliveryState,
             attempts: list[Attempt], delivery_id: uuid.UUID | None = None) -> Envelope:
    delivery = delivery_id or uuid.uuid4()
    record = DeliveryRecorded(
        delivery_id=delivery, automation_id=uuid.UUID(automation["id"]),
        case_id=uuid.UUID(case_id), form_id=automation["form_id"], event_id=uuid.uuid4(),
        webhook_id=f"msg_{delivery.hex}", state=state, attempts=attempts)
    with bound_context(correlation_id="deliveries-test"):
        return new_event(DELIVERY_RECORDED, record, form_id=automation["form_id"],
                         case_id=uuid.UUID(case_id))


async def setup(api: aiohttp.ClientSession) -> tuple[dict[str, Any], str]:
    """A form with a (never firing) automation and one case."""
    form_id = await new_form(api)
    automation = await create(api, form_id)
    case = await new_case(api, form_id)
    return automation, case["id"]


async def listed(api: aiohttp.ClientSession, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await call(api, "GET", "/api/deliveries", 200,
                                              params=params))["deliveries"]
    return found


async def record_and_wait(api: aiohttp.ClientSession, settings: Settings, event: Envelope,
                          times: int = 1) -> dict[str, Any]:
    await publish(settings, event, times)
    await processed(settings, event.id)
    shown: dict[str, Any] = await call(api, "GET", f"/api/deliveries/{event.data['delivery_id']}",
                                       200)
    return shown


# Recording

async def test_a_recorded_delivery_is_listed_and_shown_with_every_attempt(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case_id = await setup(api)
    attempts = [attempt(1, 503, body="busy"), attempt(2, None, error="timeout after 10 s"),
                attempt(3, 200)]
    event = recorded(automation, case_id, "succeeded", attempts)
    shown = await record_and_wait(api, settings, event)
    record = event.data
    summary = {
        "id": record["delivery_id"], "automation_id": automation["id"], "case_id": case_id,
        "form_id": automation["form_id"], "event_id": record["event_id"],
        "webhook_id": record["webhook_id"], "state": "succeeded", "attempt_count": 3,
        "last_response_status": 200, "last_error": None,
    }
    assert {k: shown[k] for k in summary} == summary
    assert [a["number"] for a in shown["attempts"]] == [1, 2, 3]
    assert [a["response_status"] for a in shown["attempts"]] == [503, None, 200]
    first, second = shown["attempts"][0], shown["attempts"][1]
    assert first == {
        "id": record["attempts"][0]["id"], "number": 1,
        "started_at": (T0 + timedelta(seconds=1)).isoformat(), "duration_ms": 12.5,
        "request": {"method": "POST", "url": "https://crm.example/hook",
                    "headers": {"Content-Type": "application/json",
                                "Authorization": "Basic ***"},
                    "body": '{"caseNumber":1}'},
        "response_status": 503, "response_headers": {"Content-Type": "application/json"},
        "response_body": "busy", "error": None}
    assert (second["error"], second["response_body"]) == ("timeout after 10 s", None)
    [row] = await listed(api, automation=automation["id"])
    assert row == {k: v for k, v in shown.items() if k != "attempts"}
    assert datetime.fromisoformat(row["created_at"]) <= datetime.fromisoformat(row["updated_at"])


async def test_a_redelivered_record_does_not_duplicate_attempts(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case_id = await setup(api)
    event = recorded(automation, case_id, "failed", [attempt(1, 500), attempt(2, 500)])
    shown = await record_and_wait(api, settings, event, times=3)
    assert shown["attempt_count"] == len(shown["attempts"]) == 2
    # The same outcome published again under a new event id (a dispatcher crash before ack).
    again = Envelope.model_validate({**event.model_dump(), "id": uuid.uuid4()})
    shown = await record_and_wait(api, settings, again)
    assert shown["attempt_count"] == len(shown["attempts"]) == 2
    assert len(await listed(api, automation=automation["id"])) == 1


async def test_a_replay_record_adds_its_attempts_and_updates_the_state(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case_id = await setup(api)
    failed = recorded(automation, case_id, "failed", [attempt(1, 500)])
    before = await record_and_wait(api, settings, failed)
    delivery_id = uuid.UUID(before["id"])
    later = T0 + timedelta(minutes=5)
    replayed = recorded(automation, case_id, "succeeded", [attempt(1, 200, at=later)],
                        delivery_id=delivery_id)
    after = await record_and_wait(api, settings, replayed)
    assert (after["state"], after["attempt_count"], after["last_response_status"]) == \
        ("succeeded", 2, 200)
    assert [a["response_status"] for a in after["attempts"]] == [500, 200]
    assert after["updated_at"] > before["updated_at"]
    assert after["created_at"] == before["created_at"]
    assert after["event_id"] == before["event_id"]  # the row keeps the event that fired it
    # The first record arriving late (a redelivery) must not turn the state back.
    late = Envelope.model_validate({**failed.model_dump(), "id": uuid.uuid4()})
    assert (await record_and_wait(api, settings, late))["state"] == "succeeded"


async def test_nul_characters_in_a_receivers_answer_are_stored_replaced(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case_id = await setup(api)
    event = recorded(automation, case_id, "failed", [attempt(1, 500, body="bin\x00ary")])
    shown = await record_and_wait(api, settings, event)
    assert shown["attempts"][0]["response_body"] == "bin\ufffdary"


async def test_a_record_for_a_deleted_automation_is_dropped_not_stuck(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case_id = await setup(api)
    ghost = {**automation, "id": str(uuid.uuid4())}
    orphan = recorded(ghost, case_id, "failed", [attempt(1, 500)])
    await publish(settings, orphan)
    await processed(settings, orphan.id)
    await call(api, "GET", f"/api/deliveries/{orphan.data['delivery_id']}", 404)
    event = recorded(automation, case_id, "succeeded", [attempt(1, 200)])
    assert (await record_and_wait(api, settings, event))["state"] == "succeeded"


async def test_deleting_the_automation_deletes_its_log(api: aiohttp.ClientSession,
                                                       settings: Settings) -> None:
    automation, case_id = await setup(api)
    shown = await record_and_wait(api, settings,
                                  recorded(automation, case_id, "failed", [attempt(1, 500)]))
    await call(api, "DELETE", f"/api/automations/{automation['id']}", 200)
    await call(api, "GET", f"/api/deliveries/{shown['id']}", 404)


# Listing

async def test_filters_by_automation_case_and_state_newest_first(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case_a = await setup(api)
    other = await create(api, automation["form_id"])
    case_b = (await new_case(api, automation["form_id"]))["id"]
    events = [recorded(automation, case_a, "failed", [attempt(1, 500)]),
              recorded(automation, case_b, "succeeded", [attempt(1, 200)]),
              recorded(other, case_a, "succeeded", [attempt(1, 201)])]
    for event in events:  # one by one, so created_at gives them an order
        await record_and_wait(api, settings, event)
    ids = [e.data["delivery_id"] for e in events]

    async def ids_of(**params: str) -> list[str]:
        return [d["id"] for d in await listed(api, **params)]

    assert await ids_of(automation=automation["id"]) == [ids[1], ids[0]]
    assert await ids_of(case=case_a) == [ids[2], ids[0]]
    assert await ids_of(case=case_a, state="succeeded") == [ids[2]]
    assert await ids_of(automation=automation["id"], state="failed") == [ids[0]]
    assert await ids_of(automation=other["id"], case=case_b) == []
    assert [i for i in await ids_of() if i in ids] == ids[::-1]


async def test_pages_follow_next_before(api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case_id = await setup(api)
    ids = []
    for n in range(5):
        event = recorded(automation, case_id, "succeeded", [attempt(1, 200 + n)])
        await record_and_wait(api, settings, event)
        ids.append(event.data["delivery_id"])
    pages, before = [], None
    while True:
        params = {"automation": automation["id"], "limit": "2",
                  **({"before": before} if before else {})}
        page = await call(api, "GET", "/api/deliveries", 200, params=params)
        pages.append([d["id"] for d in page["deliveries"]])
        before = page["next_before"]
        if before is None:
            break
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[0:1]]


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"limit": "-1"}, "limit"), ({"state": "pending"}, "state"),
    ({"automation": "nope"}, "automation"), ({"case": "123"}, "case"),
    ({"before": "nope"}, "before"), ({"before": str(uuid.uuid4())}, "before")])
async def test_bad_query_values_are_400(params: dict[str, str], field: str,
                                        api: aiohttp.ClientSession) -> None:
    errors = (await call(api, "GET", "/api/deliveries", 400, params=params))["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [(field, "invalid")]


@pytest.mark.parametrize("delivery_id", [str(uuid.uuid4()), "nope"])
async def test_unknown_delivery_is_404(delivery_id: str, api: aiohttp.ClientSession) -> None:
    await call(api, "GET", f"/api/deliveries/{delivery_id}", 404)
    await call(api, "POST", f"/api/deliveries/{delivery_id}/replay", 404)


async def test_deliveries_need_the_bearer_token(stack: Stack,
                                                http: aiohttp.ClientSession) -> None:
    base = stack.url("casestore")
    for method, path in [("GET", "/api/deliveries"), ("GET", f"/api/deliveries/{uuid.uuid4()}"),
                         ("POST", f"/api/deliveries/{uuid.uuid4()}/replay")]:
        async with http.request(method, base + path) as resp:
            assert resp.status == 401


# Replay

async def test_replay_asks_the_dispatcher_through_an_event(
        api: aiohttp.ClientSession, settings: Settings, events: EventTap) -> None:
    automation, case_id = await setup(api)
    shown = await record_and_wait(api, settings,
                                  recorded(automation, case_id, "failed", [attempt(1, 500)]))
    answer = await call(api, "POST", f"/api/deliveries/{shown['id']}/replay", 202)
    assert answer == {"delivery_id": shown["id"], "replay": "requested"}
    event = await events.next(lambda e: e["type"] == "delivery.replay_requested"
                              and e["data"]["delivery_id"] == shown["id"])
    assert event["data"] == {"delivery_id": shown["id"], "automation_id": automation["id"],
                             "case_id": case_id}
    assert (event["form_id"], event["case_id"]) == (automation["form_id"], case_id)
