"""case.response_data: a receiver's answer written into its case by the automation, once."""

import uuid
from typing import Any

import aiohttp
import structlog

from shared.event_payloads import CaseResponseData
from shared.events import CASE_RESPONSE_DATA, Envelope, new_event
from shared.logging import bound_context
from shared.settings import Settings
from tests.helpers import (
    EventTap,
    call,
    create_automation,
    definition,
    new_case,
    new_form,
    processed,
)
from tests.helpers import publish_event as publish


def answer(automation_id: str, case_id: str, values: dict[str, Any], *, depth: int = 0,
           form_id: str | None = None) -> Envelope:
    """As the dispatcher publishes it (ingest's returnDataURL sends form_id=None)."""
    data = CaseResponseData(case_id=uuid.UUID(case_id), automation_id=uuid.UUID(automation_id),
                            delivery_id=uuid.uuid4(), values=values, automation_depth=depth)
    with bound_context(correlation_id="response-data-test"):
        return new_event(CASE_RESPONSE_DATA, data, form_id=form_id, case_id=uuid.UUID(case_id))


async def setup(api: aiohttp.ClientSession) -> tuple[dict[str, Any], dict[str, Any]]:
    form_id = await new_form(api)
    automation = await create_automation(api, form_id, definition(name="CRM sync"))
    case = await new_case(api, form_id, {"text-field": "hello", "amount": 1})
    return automation, case


async def written(api: aiohttp.ClientSession, settings: Settings, event: Envelope,
                  times: int = 1) -> dict[str, Any]:
    await publish(settings, event, times)
    await processed(settings, event.id)
    case: dict[str, Any] = await call(api, "GET", f"/api/cases/{event.case_id}", 200)
    return case


async def test_values_are_written_with_the_automation_as_author(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case = await setup(api)
    event = answer(automation["id"], case["id"], {"email": "crm@example.com", "amount": "42",
                                                  "priority": "high"},
                   form_id=automation["form_id"])
    found = await written(api, settings, event)
    assert found["data"] == {"text-field": "hello", "amount": 42, "email": "crm@example.com",
                             "priority": "high"}
    assert found["version"] == 2
    last = found["history"][-1]
    assert last["author"] == "Automation: CRM sync"
    assert {c["field"]: (c["old"], c["new"]) for c in last["changes"]} == {
        "amount": (1, 42), "email": (None, "crm@example.com"), "priority": (None, "high")}


async def test_invalid_values_are_skipped_and_the_valid_ones_written(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case = await setup(api)
    event = answer(automation["id"], case["id"], {
        "email": "not-an-email", "amount": "many", "priority": "urgent", "unknown": 1,
        "attachment": [{"id": "x"}], "text-field": "", "tags": ["a"], "urgent": True})
    with structlog.testing.capture_logs() as logs:
        found = await written(api, settings, event)
    # text-field is mandatory: a receiver may change it, never empty it.
    assert found["data"] == {"text-field": "hello", "amount": 1, "tags": ["a"], "urgent": True}
    assert sorted(e["field"] for e in logs if e["event"] == "response_value_skipped"
                  and e["case_id"] == case["id"]) == [
        "amount", "attachment", "email", "priority", "text-field", "unknown"]


async def test_an_answer_with_nothing_valid_writes_nothing(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case = await setup(api)
    found = await written(api, settings, answer(automation["id"], case["id"],
                                                {"amount": "many", "ghost": 1}))
    assert (found["version"], found["data"]) == (1, case["data"])
    assert len(found["history"]) == 1


async def test_the_update_event_names_the_automation_and_is_one_level_deeper(
        api: aiohttp.ClientSession, settings: Settings, events: EventTap) -> None:
    automation, case = await setup(api)
    event = answer(automation["id"], case["id"], {"email": "a@example.com"}, depth=2)
    await publish(settings, event)
    updated = await events.next(lambda e: e["type"] == "case.updated"
                                and e["case_id"] == case["id"])
    assert updated["data"]["source_automation_id"] == automation["id"]
    assert updated["data"]["automation_depth"] == 3
    assert updated["data"]["author"] == "Automation: CRM sync"
    assert updated["data"]["changes"] == [{"field": "email", "old": None, "new": "a@example.com"}]
    assert updated["causation_id"] == str(event.id)
    assert updated["correlation_id"] == "response-data-test"


async def test_a_redelivered_answer_is_applied_once(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case = await setup(api)
    event = answer(automation["id"], case["id"], {"email": "first@example.com"})
    await written(api, settings, event, times=2)
    # Someone edits the field afterwards; the old answer arriving again must not undo that.
    await call(api, "PATCH", f"/api/cases/{case['id']}", 200,
               {"data": {"email": "edited@example.com"}})
    found = await written(api, settings, event)
    assert found["data"]["email"] == "edited@example.com"
    assert [h["author"] for h in found["history"]] == ["Admin API", "Automation: CRM sync",
                                                        "Admin API"]


async def test_an_answer_of_a_deleted_automation_is_signed_with_its_id(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case = await setup(api)
    await call(api, "DELETE", f"/api/automations/{automation['id']}", 200)
    found = await written(api, settings, answer(automation["id"], case["id"],
                                                {"email": "late@example.com"}))
    assert found["data"]["email"] == "late@example.com"
    assert found["history"][-1]["author"] == f"Automation {automation['id']}"


async def test_an_answer_for_a_deleted_case_is_acknowledged(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, case = await setup(api)
    await call(api, "DELETE", f"/api/cases/{case['id']}", 200)
    event = answer(automation["id"], case["id"], {"email": "gone@example.com"})
    await publish(settings, event)
    await processed(settings, event.id)  # acknowledged, not retried into the dead letters
    await call(api, "GET", f"/api/cases/{case['id']}", 404)


async def test_an_automation_of_another_form_cannot_write_into_the_case(
        api: aiohttp.ClientSession, settings: Settings) -> None:
    automation, _ = await setup(api)
    other_form = await new_form(api)
    case = await new_case(api, other_form)
    found = await written(api, settings, answer(automation["id"], case["id"],
                                                {"email": "x@example.com"}))
    assert found["version"] == 1
    assert "email" not in found["data"]
