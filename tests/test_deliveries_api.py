"""The delivery log: list with filters and pages, show every attempt; deliveries made by
casestore's schedule with the test playing the dispatcher (tests/scheduling.py)."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.console_helpers import signed_in
from tests.helpers import (
    AutomationFactory,
    FormFactory,
    call,
    create_automation,
    definition,
    new_case,
    new_form,
    with_settings,
)
from tests.receiver import Receiver, Reply
from tests.scheduling import PlayedDispatcher, shown
from tests.stack import Stack
from tests.test_delivery_engine import delivery_of


async def delivered(api: aiohttp.ClientSession, played: PlayedDispatcher,
                    automation: dict[str, Any], case: dict[str, Any], status: int) -> str:
    """One delivery, sent once, finished with `status`; its id."""
    delivery_id = await played.request(automation, case)
    await played.report(await played.due(), status)
    await shown(api, delivery_id, "succeeded" if status < 300 else "failed")
    return str(delivery_id)


async def listed(api: aiohttp.ClientSession, **params: str) -> list[str]:
    found = (await call(api, "GET", "/api/deliveries", 200, params=params))["deliveries"]
    return [d["id"] for d in found]


async def test_a_delivery_is_listed_as_shown_with_every_attempt(
        api: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    form_id = await new_form(api)
    automation = await create_automation(api, form_id, with_settings(definition(), attempts=2))
    case = await new_case(api, form_id)
    delivery_id = await played.request(automation, case)
    first = await played.due()
    report = await played.report(first, 503, body="busy")
    await played.report(await played.due(), 200)
    detail = await shown(api, delivery_id, "succeeded")
    summary = {"id": str(delivery_id), "automation_id": automation["id"],
               "automation_name": automation["name"], "case_id": case["id"],
               "form_id": form_id, "webhook_id": f"msg_{delivery_id.hex}",
               "state": "succeeded", "schedule": "standard", "attempt_count": 2,
               "attempts_allowed": 2, "next_attempt_at": None,
               "last_response_status": 200, "last_error": None}
    assert {k: detail[k] for k in summary} == summary
    attempt = detail["attempts"][0]
    assert attempt == {
        "id": str(report.attempt.id), "number": 1,
        "started_at": report.attempt.started_at.isoformat(), "duration_ms": 12.5,
        "request": {"method": "POST", "url": "https://crm.example/hook",
                    "headers": {"Authorization": "Basic ***"}, "body": '{"caseNumber":1}'},
        "response_status": 503, "response_headers": {}, "response_body": "busy",
        "response_body_cut": False, "error": None}
    [row] = (await call(api, "GET", "/api/deliveries", 200,
                        params={"automation": automation["id"]}))["deliveries"]
    assert row == {k: v for k, v in detail.items() if k != "attempts"}
    assert datetime.fromisoformat(row["created_at"]) <= datetime.fromisoformat(row["updated_at"])


async def test_filters_by_automation_case_state_and_time_newest_first(
        api: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    form_id = await new_form(api)
    automation, other = [await create_automation(api, form_id,
                                                 with_settings(definition(), attempts=1))
                         for _ in range(2)]
    case_a, case_b = await new_case(api, form_id), await new_case(api, form_id)
    ids = [await delivered(api, played, automation, case_a, 500),
           await delivered(api, played, automation, case_b, 200),
           await delivered(api, played, other, case_a, 201)]
    waiting = str(await played.request(other, case_b))
    await shown(api, uuid.UUID(waiting))  # casestore took it on (the request is a message)
    assert await listed(api, automation=automation["id"]) == [ids[1], ids[0]]
    assert await listed(api, case=case_a["id"]) == [ids[2], ids[0]]
    assert await listed(api, case=case_a["id"], state="succeeded") == [ids[2]]
    assert await listed(api, automation=automation["id"], state="failed") == [ids[0]]
    assert await listed(api, automation=other["id"], state="pending,sending") == [waiting]
    second = (await shown(api, uuid.UUID(ids[1])))["created_at"]
    assert await listed(api, automation=automation["id"], since=second) == [ids[1]]
    assert await listed(api, automation=automation["id"], until=second) == [ids[0]]
    later = (datetime.fromisoformat(second) + timedelta(hours=1)).isoformat()
    assert await listed(api, automation=automation["id"], since=later) == []


async def test_pages_follow_next_before(api: aiohttp.ClientSession,
                                        played: PlayedDispatcher) -> None:
    form_id = await new_form(api)
    automation = await create_automation(api, form_id, with_settings(definition(), attempts=1))
    case = await new_case(api, form_id)
    ids = [await delivered(api, played, automation, case, 200) for _ in range(5)]
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
    ({"limit": "-1"}, "limit"), ({"state": "lost"}, "state"), ({"state": "failed,x"}, "state"),
    ({"since": "yesterday"}, "since"), ({"until": "2026-13-01"}, "until"),
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
                         ("POST", f"/api/deliveries/{uuid.uuid4()}/replay"),
                         ("POST", f"/api/automations/{uuid.uuid4()}/replay")]:
        async with http.request(method, base + path) as resp:
            assert resp.status == 401


@pytest.mark.parametrize(("answer", "cut"), [
    (b"a" * 100_000, True),  # cut at the excerpt's 65,536 bytes
    ("é".encode() * 40_000, True),  # 80,000 bytes, cut inside a character
    (b"b" * 65_535, False),  # one byte short of the excerpt: whole
    ("é".encode() * 32_767, False)])  # 65,534 bytes of two-byte characters: whole
async def test_the_log_says_when_an_answer_was_cut_to_its_excerpt(
        answer: bytes, cut: bool, stack: Stack, api: aiohttp.ClientSession,
        make_form: FormFactory, make_automation: AutomationFactory, receiver: Receiver) -> None:
    hook = await make_form()
    automation = await make_automation(hook["form_id"], receiver.endpoint(Reply(body=answer)))
    await new_case(api, hook["form_id"])
    detail = await delivery_of(api, automation, "succeeded")
    [attempt] = detail["attempts"]
    assert attempt["response_body_cut"] is cut
    kept = attempt["response_body"].encode()
    if cut:  # the first 65,536 bytes (a character cut in two shows as U+FFFD)
        assert kept.startswith(answer[:65_534])
    else:
        assert kept == answer
    async with signed_in(stack) as console:
        page = await console.page(f"/console/deliveries/{detail['id']}")
    assert ("The answer filled the 65,536 bytes the log keeps" in page) is cut
