"""Time-based triggers end to end: timers in Postgres fire through casestore's scheduler, the
dispatcher sends; dates and lead times, offsets, repeats, moves, If at firing time, replicas."""

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from prometheus_client import REGISTRY

from services.casestore.timer_scheduler import TimerScheduler
from services.casestore.timer_times import field_time, next_occurrence
from shared.automation_rules import DateReached
from shared.db import create_pool
from shared.durations import parse
from tests.helpers import FormFactory, call, until, webhook_action
from tests.receiver import Receiver
from tests.stack import Stack, free_port

TOLERANCE = 3.0  # seconds late a firing may arrive on a busy 2-core machine


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def timed_automation(api: aiohttp.ClientSession, form_id: str, url: str,
                           when: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    action = webhook_action(url)
    action["content"] += [{"key": "trigger", "meta": "trigger"},
                          {"key": "dueAt", "meta": "due_at"},
                          {"key": "lateBy", "meta": "late_by"}]
    body = {"name": f"timed-{uuid.uuid4().hex[:6]}", "when": when, "action": action, **extra}
    created: dict[str, Any] = await call(api, "POST", f"/api/forms/{form_id}/automations", 201,
                                         body)
    return created


async def new_case(api: aiohttp.ClientSession, form_id: str, **data: Any) -> dict[str, Any]:
    found: dict[str, Any] = await call(api, "POST", f"/api/forms/{form_id}/cases", 201,
                                       {"data": {"text-field": "x", **data}})
    return found


async def quiet_for(receiver: Receiver, url: str, count: int, seconds: float) -> None:
    await asyncio.sleep(seconds)
    assert len(receiver.at(url)) == count


async def test_a_datetime_a_few_seconds_ahead_fires_then(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    automation = await timed_automation(api, hook["form_id"], url,
                                        [{"event": "date_reached", "field": "seen-at"}])
    fired_before = REGISTRY.get_sample_value("casewire_timer_lateness_seconds_count") or 0.0
    due = soon(2.5)
    case = await new_case(api, hook["form_id"], **{"seen-at": due.isoformat()})
    [timer] = (await call(api, "GET", f"/api/cases/{case['id']}/timers", 200))["timers"]
    assert (timer["automation_id"], timer["trigger_index"]) == (automation["id"], 0)
    assert datetime.fromisoformat(timer["due_at"]) == due.replace(microsecond=due.microsecond)
    started = asyncio.get_running_loop().time()
    [sent] = await receiver.wait_for(url, 1, within=10)
    waited = sent.arrived_at - started
    assert 2.0 < waited < 2.5 + TOLERANCE
    body = sent.json()
    assert (body["trigger"], body["caseNumber"]) == ("date_reached", case["case_number"])
    assert datetime.fromisoformat(body["dueAt"]) == due
    assert 0 <= body["lateBy"] < TOLERANCE
    assert (await call(api, "GET", f"/api/cases/{case['id']}/timers", 200))["timers"] == []
    # casestore's /metrics (this process's registry) timed how late it fired.
    assert REGISTRY.get_sample_value("casewire_timer_lateness_seconds_count") == fired_before + 1


@pytest.mark.parametrize(("field_in", "offset", "fires_in"), [(4.0, "-PT2S", 2.0),
                                                             (1.0, "PT2S", 3.0)])
async def test_an_offset_moves_the_firing_before_or_after_the_date(
        field_in: float, offset: str, fires_in: float, make_form: FormFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await timed_automation(api, hook["form_id"], url,
                           [{"event": "date_reached", "field": "seen-at", "offset": offset}])
    started = asyncio.get_running_loop().time()
    await new_case(api, hook["form_id"], **{"seen-at": soon(field_in).isoformat()})
    [sent] = await receiver.wait_for(url, 1, within=10)
    assert fires_in - 0.5 < sent.arrived_at - started < fires_in + TOLERANCE


async def test_a_repeat_with_a_count_fires_that_many_times(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await timed_automation(api, hook["form_id"], url, [{
        "event": "date_reached", "field": "seen-at", "repeat": {"every": "PT1S", "count": 3}}])
    await new_case(api, hook["form_id"], **{"seen-at": soon(1).isoformat()})
    sent = await receiver.wait_for(url, 3, within=10)
    gaps = [b.arrived_at - a.arrived_at for a, b in itertools.pairwise(sent)]
    assert all(0.5 < gap < 1 + TOLERANCE for gap in gaps), gaps
    assert len({s.headers["webhook-id"] for s in sent}) == 3  # each firing its own delivery
    await quiet_for(receiver, url, 3, 1.5)


async def test_moving_the_date_moves_the_timer_and_clearing_it_removes_it(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await timed_automation(api, hook["form_id"], url,
                           [{"event": "date_reached", "field": "seen-at"}])
    moved = await new_case(api, hook["form_id"], **{"seen-at": soon(60).isoformat()})
    cleared = await new_case(api, hook["form_id"], **{"seen-at": soon(2).isoformat()})
    await call(api, "PATCH", f"/api/cases/{moved['id']}", 200,
               {"data": {"seen-at": soon(1.5).isoformat()}})
    await call(api, "PATCH", f"/api/cases/{cleared['id']}", 200, {"data": {"seen-at": None}})
    [sent] = await receiver.wait_for(url, 1, within=10)
    assert sent.json()["caseNumber"] == moved["case_number"]
    await quiet_for(receiver, url, 1, 2)


async def test_deleting_the_case_removes_its_timers(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    automation = await timed_automation(api, hook["form_id"], url,
                                        [{"event": "date_reached", "field": "seen-at"}])
    case = await new_case(api, hook["form_id"], **{"seen-at": soon(1.5).isoformat()})
    await call(api, "DELETE", f"/api/cases/{case['id']}", 200)
    timers = await call(api, "GET", f"/api/automations/{automation['id']}/timers", 200)
    assert timers["timers"] == []
    await quiet_for(receiver, url, 0, 2.5)


async def test_lead_time_since_created_fires_unless_the_status_is_reached(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await timed_automation(api, hook["form_id"], url, [{
        "event": "lead_time_exceeded", "duration": "PT2S", "until_status": ["closed"]}])
    started = asyncio.get_running_loop().time()
    late = await new_case(api, hook["form_id"])
    done = await new_case(api, hook["form_id"])
    await call(api, "PATCH", f"/api/cases/{done['id']}", 200, {"status": "closed"})
    [sent] = await receiver.wait_for(url, 1, within=10)
    assert sent.json()["caseNumber"] == late["case_number"]
    assert sent.json()["trigger"] == "lead_time_exceeded"
    assert 1.5 < sent.arrived_at - started < 2 + TOLERANCE
    await quiet_for(receiver, url, 1, 1.5)  # fires once


async def test_lead_time_since_status_entered_counts_from_the_status_change(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await timed_automation(api, hook["form_id"], url, [{
        "event": "lead_time_exceeded", "duration": "PT2S", "since": "status_entered",
        "until_status": ["closed"]}])
    case = await new_case(api, hook["form_id"])
    await asyncio.sleep(1.5)
    changed = asyncio.get_running_loop().time()
    await call(api, "PATCH", f"/api/cases/{case['id']}", 200, {"status": "in_progress"})
    [sent] = await receiver.wait_for(url, 1, within=10)
    assert 1.5 < sent.arrived_at - changed < 2 + TOLERANCE


async def test_the_if_is_evaluated_on_the_case_as_it_is_when_the_timer_fires(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await timed_automation(api, hook["form_id"], url,
                           [{"event": "date_reached", "field": "seen-at"}],
                           **{"if": {"field": "priority", "op": "eq", "value": "high"}})
    raised = await new_case(api, hook["form_id"], priority="low",
                            **{"seen-at": soon(2).isoformat()})
    await new_case(api, hook["form_id"], priority="low", **{"seen-at": soon(2).isoformat()})
    await call(api, "PATCH", f"/api/cases/{raised['id']}", 200, {"data": {"priority": "high"}})
    [sent] = await receiver.wait_for(url, 1, within=10)
    assert sent.json()["caseNumber"] == raised["case_number"]
    await quiet_for(receiver, url, 1, 1.5)


async def test_skiptriggers_cases_get_no_timers(
        make_form: FormFactory, api: aiohttp.ClientSession, http: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    automation = await timed_automation(api, hook["form_id"], url,
                                        [{"event": "date_reached", "field": "seen-at"}])
    async with http.post(hook["url"] + "/skiptriggers",
                         json={"text-field": "x", "seen-at": soon(30).isoformat()}) as resp:
        assert resp.status == 200
    async with http.post(hook["url"],
                         json={"text-field": "y", "seen-at": soon(30).isoformat()}) as resp:
        assert resp.status == 200

    async def timers() -> Any:
        found = await call(api, "GET", f"/api/automations/{automation['id']}/timers", 200)
        return found["timers"] if found["timers"] else None

    assert len(await until(timers)) == 1
    await asyncio.sleep(0.5)
    assert len(await timers()) == 1


async def test_an_automation_created_later_gets_timers_for_existing_cases(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    for n in range(5):
        await new_case(api, hook["form_id"], **{"seen-at": soon(30 + n).isoformat()})
    await new_case(api, hook["form_id"])  # no date: no timer
    automation = await timed_automation(api, hook["form_id"], receiver.endpoint(),
                                        [{"event": "date_reached", "field": "seen-at"}])
    path = f"/api/automations/{automation['id']}/timers"

    async def all_there() -> Any:
        found = (await call(api, "GET", path, 200, params={"limit": "2"}))
        return found if found["next_after"] else None

    first = await until(all_there)
    pages = [first["timers"]]
    after = first["next_after"]
    while after is not None:
        page = await call(api, "GET", path, 200, params={"limit": "2", "after": str(after)})
        pages.append(page["timers"])
        after = page["next_after"]
    dues = [t["due_at"] for page in pages for t in page]
    assert len(dues) == 5
    assert dues == sorted(dues)
    await call(api, "POST", f"/api/automations/{automation['id']}/disable", 200)
    assert (await call(api, "GET", path, 200))["timers"] == []


async def test_a_disabled_automations_timers_stay_removed_after_the_schedulers_next_rounds(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver,
        stack: Stack) -> None:
    """Not only at once: a disable that asked for its timers to be rebuilt would see them
    back after the scheduler's next rounds. Enabling it again brings them back."""
    hook = await make_form()
    for n in range(3):
        await new_case(api, hook["form_id"], **{"seen-at": soon(3600 + n).isoformat()})
    automation = await timed_automation(api, hook["form_id"], receiver.endpoint(),
                                        [{"event": "date_reached", "field": "seen-at"}])
    path = f"/api/automations/{automation['id']}"

    async def timers() -> list[Any]:
        found: list[Any] = (await call(api, "GET", f"{path}/timers", 200))["timers"]
        return found

    await until(lambda: _count(timers, 3))
    await call(api, "POST", f"{path}/disable", 200)
    pool = await create_pool(stack.settings)
    try:
        scheduler = TimerScheduler(pool, stack.settings)
        for _ in range(3):  # rounds of our own, besides the stack's scheduler's
            await scheduler.step()
            await asyncio.sleep(stack.settings.timer_poll_seconds)
        assert await timers() == []
        assert not await pool.fetchval("SELECT 1 FROM timer_rebuilds WHERE automation_id = $1",
                                       uuid.UUID(automation["id"]))
    finally:
        await pool.close()
    await call(api, "POST", f"{path}/enable", 200)
    await until(lambda: _count(timers, 3))


async def _count(timers: Any, expected: int) -> bool:
    return len(await timers()) == expected


async def test_two_casestores_share_the_timers_without_firing_one_twice(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver,
        stack: Stack) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await timed_automation(api, hook["form_id"], url,
                           [{"event": "date_reached", "field": "seen-at"}])
    second = Stack(stack.settings.model_copy(update={"casestore_port": free_port()}))
    await second.start("casestore")
    try:
        due = soon(2).isoformat()
        for _ in range(40):
            await new_case(api, hook["form_id"], **{"seen-at": due})
        sent = await receiver.wait_for(url, 40, within=20)
        await asyncio.sleep(1)
    finally:
        await second.stop("casestore")
    numbers = [s.json()["caseNumber"] for s in receiver.at(url)]
    assert sorted(numbers) == list(range(1, 41))
    del sent


async def test_due_timers_fire_before_timers_are_built_for_old_cases(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver,
        stack: Stack) -> None:
    url = receiver.endpoint()
    due_form, old_form = await make_form(), await make_form()
    due = await timed_automation(api, due_form["form_id"], url,
                                 [{"event": "date_reached", "field": "seen-at"}])
    for _ in range(5):
        await new_case(api, due_form["form_id"], **{"seen-at": soon(3600).isoformat()})
    for _ in range(3):
        await new_case(api, old_form["form_id"], **{"seen-at": soon(3600).isoformat()})
    later = await timed_automation(api, old_form["form_id"], url,
                                   [{"event": "date_reached", "field": "seen-at"}])
    pool = await create_pool(stack.settings)
    ids = [uuid.UUID(due["id"]), uuid.UUID(later["id"])]
    try:
        await until(lambda: pool.fetchval(
            "SELECT NOT EXISTS (SELECT 1 FROM timer_rebuilds WHERE automation_id = ANY($1))", ids))
        await stack.stop("casestore")
        # Five timers fall due while the later automation's timers are (again) to be built.
        await pool.execute("UPDATE timers SET due_at = now() - interval '1 second'"
                           " WHERE automation_id = $1", ids[0])
        await pool.execute("DELETE FROM timers WHERE automation_id = $1", ids[1])
        await pool.execute("INSERT INTO timer_rebuilds (automation_id) VALUES ($1)", ids[1])
        scheduler = TimerScheduler(pool, stack.settings.model_copy(update={"timer_batch": 2}))

        async def timers(automation_id: uuid.UUID, only_due: bool = False) -> int:
            return int(await pool.fetchval(
                "SELECT count(*) FROM timers WHERE automation_id = $1"
                " AND (NOT $2 OR due_at <= now())", automation_id, only_due))

        rounds_with_due_left = 0
        while await scheduler.step():
            if await timers(ids[0], only_due=True):
                rounds_with_due_left += 1
                assert await timers(ids[1]) == 0
        assert rounds_with_due_left >= 2
        assert [await timers(ids[0], only_due=True), await timers(ids[1])] == [0, 3]
    finally:
        await pool.close()
        if "casestore" not in stack.runners:
            await stack.start("casestore")
    await receiver.wait_for(url, 5, within=20)


async def test_timers_due_while_everything_was_stopped_fire_once_late(
        make_form: FormFactory, api: aiohttp.ClientSession, receiver: Receiver,
        stack: Stack) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await timed_automation(api, hook["form_id"], url, [{
        "event": "date_reached", "field": "seen-at", "repeat": {"every": "PT1S", "count": 8}}])
    await new_case(api, hook["form_id"], **{"seen-at": soon(1).isoformat()})
    await stack.stop("casestore")
    try:
        await asyncio.sleep(4.5)  # four occurrences pass unseen
    finally:
        await stack.start("casestore")
    first, *rest = await receiver.wait_for(url, 2, within=10)
    assert first.json()["lateBy"] > 2.5
    await asyncio.sleep(4)
    # once for the missed ones, then one a second for those left: never eight in all
    assert 3 <= len(receiver.at(url)) <= 6
    del rest


def test_a_daily_reminder_at_eight_stays_at_eight_across_daylight_saving() -> None:
    """Stockholm moves its clocks on 2026-03-29: 08:00 local is 07:00 UTC before, 06:00 after."""
    zone = ZoneInfo("Europe/Stockholm")
    trigger = DateReached(event="date_reached", field="due-date", offset="-P2D", at="08:00",
                          repeat={"every": "P1D", "count": 4})
    base = field_time(trigger, "2026-03-30", zone)
    assert base is not None
    dues, after = [], -1
    while (found := next_occurrence(trigger, base, zone, datetime(2026, 3, 1, tzinfo=UTC),
                                    after)) is not None:
        due, after = found
        dues.append(due.astimezone(UTC))
    assert [d.isoformat() for d in dues] == [
        "2026-03-28T07:00:00+00:00", "2026-03-29T06:00:00+00:00",
        "2026-03-30T06:00:00+00:00", "2026-03-31T06:00:00+00:00"]
    assert {d.astimezone(zone).hour for d in dues} == {8}


def test_hours_are_exact_across_daylight_saving() -> None:
    zone = ZoneInfo("Europe/Stockholm")
    before = datetime(2026, 3, 28, 12, 0, tzinfo=zone)
    assert parse("PT24H").after(before, zone) - before == timedelta(hours=24)
    assert parse("P1D").after(before, zone) - before == timedelta(hours=23)


async def test_time_triggers_are_checked_against_the_form(
        make_form: FormFactory, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    path = f"/api/forms/{hook['form_id']}/automations"
    base = {"name": "bad", "action": webhook_action("http://127.0.0.1:9/")}
    errors = (await call(api, "POST", path, 400, {**base, "when": [
        {"event": "date_reached", "field": "text-field"},
        {"event": "date_reached", "field": "seen-at", "at": "08:00"},
        {"event": "lead_time_exceeded", "duration": "P1D", "until_status": ["archived"]},
    ]}))["errors"]
    assert {e["field"] for e in errors} == {"when[0].field", "when[1].at",
                                            "when[2].until_status"}


async def test_a_form_names_an_iana_time_zone(api: aiohttp.ClientSession) -> None:
    form = {"id": f"tz-{uuid.uuid4().hex[:8]}", "name": "Zoned",
            "time_zone": "Europe/Stockholm"}
    assert (await call(api, "POST", "/api/forms", 201, form))["time_zone"] == "Europe/Stockholm"
    errors = (await call(api, "POST", "/api/forms", 400,
                         {**form, "id": "tz-bad", "time_zone": "Mars/Olympus"}))["errors"]
    assert "IANA" in errors[0]["message"]
