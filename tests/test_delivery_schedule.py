"""casestore's delivery schedule, with the test playing the dispatcher (tests/scheduling.py):
every attempt handed out in turn, retries waiting in Postgres, at most so many in flight per
endpoint, circuits that pause failing endpoints, automations disabled for good reasons."""

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from services.casestore import delivery_work
from shared.db import create_pool
from shared.event_payloads import (
    DeliveryAttempted,
    DeliveryReports,
    DeliveryRequested,
    DeliveryRequests,
)
from shared.events import DELIVERY_ATTEMPTED, DELIVERY_REQUESTED, new_event
from shared.settings import Settings
from tests.faults import replaced
from tests.helpers import (
    EventTap,
    call,
    create_automation,
    definition,
    new_case,
    new_form,
    publish_raw,
    until,
    with_settings,
)
from tests.scheduling import PlayedDispatcher, attempt, outcome, shown, snapshot
from tests.stack import Stack
from tests.test_pipeline_metrics import reaches, scrape, value


async def health_when(api: aiohttp.ClientSession, automation: dict[str, Any],
                      state: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        shown = await call(api, "GET", f"/api/automations/{automation['id']}", 200)
        return shown["health"] if shown["health"]["state"] == state else None

    found: dict[str, Any] = await until(probe)
    return found


async def health_is(api: aiohttp.ClientSession, automation: dict[str, Any],
                    expected: tuple[str, int]) -> bool:
    health = (await call(api, "GET", f"/api/automations/{automation['id']}", 200))["health"]
    return (health["state"], health["consecutive_failures"]) == expected


async def disabled(api: aiohttp.ClientSession, automation: dict[str, Any]) -> Any:
    shown_automation = await call(api, "GET", f"/api/automations/{automation['id']}", 200)
    return None if shown_automation["enabled"] else shown_automation


async def setup(api: aiohttp.ClientSession, **settings: Any) -> tuple[dict[str, Any],
                                                                       dict[str, Any]]:
    """A form with one (never firing by itself) automation and one case."""
    form_id = await new_form(api)
    automation = await create_automation(api, form_id, with_settings(definition(), **settings))
    return automation, await new_case(api, form_id)


async def test_a_delivery_waits_in_postgres_between_attempts_and_ends_on_success(
        api: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    automation, case = await setup(api, attempts=3)
    delivery_id = await played.request(automation, case)
    first = await played.due()
    assert first.case is not None
    assert (first.delivery_id, first.number, first.case.case_id) == (delivery_id, 1,
                                                                   uuid.UUID(case["id"]))
    assert first.webhook_id == f"msg_{delivery_id.hex}"
    await played.report(first, 503, retry_after=1.0)
    waiting = await shown(api, delivery_id, "retrying")
    assert waiting["next_attempt_at"] is not None
    await played.none_due(0.7)  # the receiver asked for a second
    second = await played.due()
    assert second.number == 2
    await played.report(second, 200)
    done = await shown(api, delivery_id, "succeeded")
    assert [(a["number"], a["response_status"]) for a in done["attempts"]] == [(1, 503),
                                                                            (2, 200)]
    assert (done["attempt_count"], done["attempts_allowed"], done["next_attempt_at"]) == \
        (2, 3, None)
    assert done["automation_name"] == automation["name"]


@pytest.mark.parametrize(("attempts", "statuses", "count"), [
    (3, [500, 500, 500], 3), (3, [400], 1), (1, [None], 1), (2, [404], 1)])
async def test_a_delivery_fails_when_its_attempts_run_out_or_the_answer_is_final(
        attempts: int, statuses: list[int | None], count: int, api: aiohttp.ClientSession,
        played: PlayedDispatcher) -> None:
    automation, case = await setup(api, attempts=attempts)
    delivery_id = await played.request(automation, case)
    for status in statuses:
        await played.report(await played.due(), status)
    failed = await shown(api, delivery_id, "failed")
    assert failed["attempt_count"] == count
    await played.none_due(0.5)


async def test_repeated_requests_and_reports_change_nothing(
        api: aiohttp.ClientSession, played: PlayedDispatcher, stack: Stack) -> None:
    """A delivery and an attempt are written once by their own ids; the repeats count as
    duplicates skipped."""
    skipped = "casewire_duplicates_skipped_total"
    before = value(await scrape(stack.url("casestore")), skipped)
    automation, case = await setup(api)
    delivery_id = await played.request(automation, case, times=3)
    due = await played.due()
    await played.none_due(0.5)
    await played.report(due, 200, times=3)
    done = await shown(api, delivery_id, "succeeded")
    assert done["attempt_count"] == 1
    listed = await call(api, "GET", "/api/deliveries", 200,
                        params={"automation": automation["id"]})
    assert len(listed["deliveries"]) == 1
    await reaches(stack.url("casestore"), skipped, lambda shown: shown - before == 4)


async def test_nul_characters_in_a_receivers_answer_are_stored_replaced(
        api: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    automation, case = await setup(api, attempts=1)
    delivery_id = await played.request(automation, case)
    await played.report(await played.due(), 500, body="bin\x00ary")
    failed = await shown(api, delivery_id, "failed")
    assert failed["attempts"][0]["response_body"] == "bin\ufffdary"


@pytest.fixture
async def narrow(settings: Settings, stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    """A casestore handing out at most 4 attempts of an endpoint at a time (twice a ceiling
    of 2)."""
    async with replaced(stack, "casestore", endpoint_concurrency=2) as other, aiohttp.ClientSession(
            base_url=other.url("casestore"),
            headers={"Authorization": f"Bearer {settings.admin_token}"}) as api:
        yield api


async def test_an_endpoints_window_of_attempts_is_handed_out_and_others_go_by(
        narrow: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    api = narrow
    slow, case = await setup(api)
    other, other_case = await setup(api)
    for _ in range(10):
        await played.request(slow, case)
    out = await played.dues(4)
    assert {d.automation_id for d in out} == {uuid.UUID(slow["id"])}
    await played.request(other, other_case)
    assert (await played.due()).automation_id == uuid.UUID(other["id"])  # not held back
    await played.none_due(0.5)  # the slow endpoint's six others wait for its window
    await played.report(out[0], 200)
    assert (await played.due()).automation_id == uuid.UUID(slow["id"])


@pytest.fixture
async def tripping(settings: Settings, stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    """A casestore whose circuits open after 2 failures in a row, for two seconds, handing out
    2 attempts of an endpoint at a time (twice a ceiling of 1)."""
    async with replaced(stack, "casestore", breaker_failures=2, breaker_cooldown_seconds=2.0,
                        endpoint_concurrency=1) as other, aiohttp.ClientSession(
            base_url=other.url("casestore"),
            headers={"Authorization": f"Bearer {settings.admin_token}"}) as api:
        yield api


async def test_failures_in_a_row_pause_the_endpoint_until_one_probe_succeeds(
        tripping: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    api = tripping
    automation, case = await setup(api, attempts=1)  # no retry goes out between the failures
    for _ in range(2):
        await played.request(automation, case)
    for due in await played.dues(2):
        await played.report(due, 500)
    health = await health_when(api, automation, "open")
    assert health["consecutive_failures"] == 2
    assert health["open_until"] is not None
    waiting = [await played.request(automation, case) for _ in range(2)]
    await played.none_due(0.6)  # paused
    for delivery_id in waiting:  # waiting deliveries are not charged an attempt
        assert (await shown(api, delivery_id, "pending"))["attempt_count"] == 0
    probe = await played.due(within=6)
    await played.none_due(0.3)  # only the probe while half open
    await played.report(probe, 200)
    health = await health_when(api, automation, "closed")
    assert health["consecutive_failures"] == 0
    assert health["last_success_at"] is not None
    await played.report(await played.due(), 200)  # the rest flows again


async def test_a_failed_probe_pauses_the_endpoint_again(
        tripping: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    api = tripping
    automation, case = await setup(api, attempts=1)
    for _ in range(2):
        await played.request(automation, case)
    for due in await played.dues(2):
        await played.report(due, 500)
    await health_when(api, automation, "open")
    await played.request(automation, case)
    await played.report(await played.due(within=6), 500)  # the probe
    await until(lambda: health_is(api, automation, ("open", 3)))


@pytest.fixture
async def tripping_wide(settings: Settings, stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    """A casestore whose circuits open after 2 failures in a row, for 3 seconds, and that
    hands out 12 attempts of an endpoint at a time (twice a ceiling of 6)."""
    async with replaced(stack, "casestore", breaker_failures=2, breaker_cooldown_seconds=3.0,
                        endpoint_concurrency=6) as other, aiohttp.ClientSession(
            base_url=other.url("casestore"),
            headers={"Authorization": f"Bearer {settings.admin_token}"}) as api:
        yield api


async def test_failures_of_attempts_in_flight_as_the_circuit_opened_do_not_lengthen_it(
        tripping_wide: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    """Twelve attempts in flight all fail for one outage: the first two open the circuit
    once; the other ten, handed out before it opened, neither count nor reopen it, and the
    probe goes out when the first pause ends."""
    api = tripping_wide
    automation, case = await setup(api, attempts=1)  # no retry goes out between the failures
    for _ in range(12):
        await played.request(automation, case)
    in_flight = await played.dues(12)
    for due in in_flight:
        await played.report(due, 503)
    health = await health_when(api, automation, "open")
    await played.request(automation, case)  # waits for the pause to end: the probe
    await asyncio.sleep(1.0)  # every report settled
    after = (await call(api, "GET", f"/api/automations/{automation['id']}", 200))["health"]
    assert (after["state"], after["open_until"]) == ("open", health["open_until"])
    assert after["consecutive_failures"] == 2
    opened_for = (datetime.fromisoformat(after["open_until"])
                  - datetime.fromisoformat(after["last_failure_at"]))
    assert opened_for < timedelta(seconds=3.5)  # the first pause, never doubled
    await played.none_due(1.0)
    probe = await played.due(within=6)  # within the first pause's 3 s, not 6, 12, ... 2 ** 10
    await played.none_due(0.3)  # only the probe while half open
    await played.report(probe, 200)
    await health_when(api, automation, "closed")


async def test_a_late_failure_waits_for_no_probe_and_only_the_probes_failure_doubles_the_pause(
        tripping_wide: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    """An attempt still out when the pause ends holds the probe back; its failure, arriving
    after the pause, neither reopens the circuit nor counts. The probe's failure reopens it,
    for twice as long."""
    api = tripping_wide
    automation, case = await setup(api, attempts=1)
    for _ in range(3):
        await played.request(automation, case)
    first, second, late = await played.dues(3)
    await played.report(first, 500)
    await played.report(second, 500)
    opened = await health_when(api, automation, "open")
    for _ in range(2):  # wait for the pause to end: a probe, and one after it
        await played.request(automation, case)
    await played.none_due(3.5)  # the pause is over, but `late` is still out
    await played.report(late, 500)
    probe = await played.due(within=5)
    shown_health = (await call(api, "GET", f"/api/automations/{automation['id']}", 200))["health"]
    assert (shown_health["consecutive_failures"], shown_health["open_until"]) == \
        (2, opened["open_until"])
    await played.none_due(0.3)  # only the probe while half open
    await played.report(probe, 500)
    reopened = await until(lambda: reopened_after(api, automation, opened["open_until"]))
    assert reopened["consecutive_failures"] == 3
    paused_for = (datetime.fromisoformat(reopened["open_until"])
                  - datetime.fromisoformat(reopened["last_failure_at"]))
    assert timedelta(seconds=5.5) < paused_for < timedelta(seconds=6.5)


async def reopened_after(api: aiohttp.ClientSession, automation: dict[str, Any],
                         open_until: str) -> dict[str, Any] | None:
    health: dict[str, Any] = (
        await call(api, "GET", f"/api/automations/{automation['id']}", 200))["health"]
    return health if health["state"] == "open" and health["open_until"] != open_until else None


async def test_throttling_pauses_an_endpoint_only_once_its_limit_is_down_to_one(
        tripping: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    """429s reported while the dispatcher's limit was above 1 are throttling, which the limit
    answers: they do not count toward the circuit. At a limit of 1 they do."""
    api = tripping
    automation, case = await setup(api, retry="extended")
    for _ in range(2):
        await played.request(automation, case)
    for round_ in range(3):
        for due in await played.dues(2, within=5):
            await played.report(due, 429, retry_after=0.1, limit=8)
        del round_
    await asyncio.sleep(0.5)
    assert await health_is(api, automation, ("closed", 0))
    for due in await played.dues(2, within=5):
        await played.report(due, 429, retry_after=0.1, limit=1)
    await health_when(api, automation, "open")


async def applied_together(settings: Settings, requests: list[DeliveryRequested],
                           reports: list[DeliveryAttempted]) -> None:
    """Apply the events in one transaction, in order, as casestore does with a batch."""
    pool = await create_pool(settings)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await delivery_work.apply(conn, requests,
                                      [(r, str(uuid.uuid4())) for r in reports], settings)
    finally:
        await pool.close()


async def settled_together(settings: Settings, reports: list[DeliveryAttempted]) -> None:
    await applied_together(settings, [], reports)


async def test_outcomes_settled_together_count_for_the_endpoint_in_their_order(
        api: aiohttp.ClientSession, played: PlayedDispatcher, settings: Settings) -> None:
    automation, case = await setup(api)
    for _ in range(4):
        await played.request(automation, case)
    first, second, third, fourth = await played.dues(4)
    await settled_together(settings, [outcome(first, 200), outcome(second, 500)])
    assert await health_is(api, automation, ("closed", 1))
    await settled_together(settings, [outcome(third, 500), outcome(fourth, 200)])
    assert await health_is(api, automation, ("closed", 0))
    health = (await call(api, "GET", f"/api/automations/{automation['id']}", 200))["health"]
    assert health["failing_since"] is None
    assert health["last_success_at"] is not None


async def test_a_busy_endpoints_successes_rewrite_its_health_once_a_second(
        api: aiohttp.ClientSession, played: PlayedDispatcher, settings: Settings) -> None:
    """`last_success_at` is kept to the second: a success within a second of the one written
    leaves a healthy endpoint's row alone; an older one is brought up to date."""
    automation, case = await setup(api)
    for _ in range(3):
        await played.request(automation, case)
    first, second, third = await played.dues(3)
    await settled_together(settings, [outcome(first, 200)])
    pool = await create_pool(settings)
    try:
        lately = datetime.now(UTC) - timedelta(seconds=0.5)
        long_ago = datetime.now(UTC) - timedelta(seconds=5)
        set_last = "UPDATE endpoint_health SET last_success_at = $2 WHERE automation_id = $1"
        await pool.execute(set_last, uuid.UUID(automation["id"]), lately)
        await settled_together(settings, [outcome(second, 200)])
        health = (await call(api, "GET", f"/api/automations/{automation['id']}", 200))["health"]
        assert datetime.fromisoformat(health["last_success_at"]) == lately
        await pool.execute(set_last, uuid.UUID(automation["id"]), long_ago)
        await settled_together(settings, [outcome(third, 200)])
        health = (await call(api, "GET", f"/api/automations/{automation['id']}", 200))["health"]
        assert datetime.fromisoformat(health["last_success_at"]) > lately
    finally:
        await pool.close()


async def test_a_first_attempt_reported_in_the_batch_that_requests_it_settles_it_once(
        api: aiohttp.ClientSession, played: PlayedDispatcher, settings: Settings) -> None:
    """The dispatcher sends a first attempt itself once the request is confirmed; request
    and report (here twice) may then reach casestore together."""
    automation, case = await setup(api)
    delivery_id = uuid.uuid4()
    request = DeliveryRequested(
        delivery_id=delivery_id, automation_id=automation["id"], event_id=uuid.uuid4(),
        webhook_id=f"msg_{delivery_id.hex}", case=snapshot(case), form_id=automation["form_id"],
        first_attempt_until=datetime.now(UTC) + timedelta(minutes=1))
    report = DeliveryAttempted(delivery_id=delivery_id, automation_id=automation["id"],
                               attempt=attempt(1, 200), verdict="succeeded")
    await applied_together(settings, [request], [report, report])
    done = await shown(api, delivery_id, "succeeded", within=0)
    assert done["attempt_count"] == 1
    health = (await call(api, "GET", f"/api/automations/{automation['id']}", 200))["health"]
    assert health["last_success_at"] is not None
    await played.none_due(0.5)


async def test_410_gone_disables_the_automation_and_enabling_sends_what_waited(
        api: aiohttp.ClientSession, played: PlayedDispatcher, events: EventTap) -> None:
    automation, case = await setup(api)
    gone = await played.request(automation, case)
    await played.report(await played.due(), 410)
    await shown(api, gone, "failed")
    shown_automation = await until(lambda: disabled(api, automation))
    assert shown_automation["enabled"] is False
    assert shown_automation["disabled_reason"] == "the receiver answered 410 Gone"
    assert shown_automation["disabled_at"] is not None
    event = await events.next(lambda e: e["type"] == "automation.disabled"
                              and e["data"]["automation_id"] == automation["id"])
    assert event["data"]["reason"] == "the receiver answered 410 Gone"
    waited = await played.request(automation, case)
    await played.none_due(0.6)
    await call(api, "POST", f"/api/automations/{automation['id']}/enable", 200)
    due = await played.due()
    assert due.delivery_id == waited


async def test_an_automation_whose_deliveries_all_fail_for_days_is_disabled(
        settings: Settings, stack: Stack, played: PlayedDispatcher) -> None:
    # 1.5 seconds stand for the days.
    async with replaced(stack, "casestore", disable_after_days=1.5 / 86400) as other, \
            aiohttp.ClientSession(base_url=other.url("casestore"), headers={
                "Authorization": f"Bearer {settings.admin_token}"}) as api:
        automation, case = await setup(api)
        await played.request(automation, case)
        await played.report(await played.due(), 500)
        path = f"/api/automations/{automation['id']}"
        assert (await call(api, "GET", path, 200))["enabled"] is True
        await asyncio.sleep(1.6)
        await played.request(automation, case)
        await played.report(await played.due(), 500)

        async def disabled() -> dict[str, Any] | None:
            shown_automation: dict[str, Any] = await call(api, "GET", path, 200)
            return None if shown_automation["enabled"] else shown_automation

        disabled_automation = await until(disabled, 2.5)
        assert disabled_automation["disabled_reason"] == \
            "every delivery failed for 1.73611e-05 days"


async def test_the_extended_schedule_tries_eight_times_over_its_27_hours(
        settings: Settings, stack: Stack, played: PlayedDispatcher) -> None:
    # 27 hours in about 10 seconds, through the same code.
    async with replaced(stack, "casestore", retry_time_scale=0.0001) as other, \
            aiohttp.ClientSession(base_url=other.url("casestore"), headers={
                "Authorization": f"Bearer {settings.admin_token}"}) as api:
        automation, case = await setup(api, retry="extended")
        delivery_id = await played.request(automation, case)
        handed: list[float] = []
        for number in range(1, 9):
            due = await played.due(within=10)
            assert due.number == number
            handed.append(asyncio.get_running_loop().time())
            await played.report(due, 503)
        failed = await shown(api, delivery_id, "failed")
        assert failed["attempt_count"] == failed["attempts_allowed"] == 8
        await played.none_due(0.3)
    waits = [b - a for a, b in itertools.pairwise(handed)]
    # 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h scaled by 1/10,000, +-20%: 10 h is 2.88-4.32 s,
    # and comes later by up to the scheduler's poll (0.2 s) and the report's and hand-out's
    # trips (the wait starts when casestore settles the report): 1 s on a busy machine.
    assert waits[5] > waits[2] > waits[0]
    assert 2.8 < waits[5] < 4.32 + 1.0


async def test_a_receivers_retry_after_is_kept_whatever_the_time_scale(
        settings: Settings, stack: Stack, played: PlayedDispatcher) -> None:
    async with replaced(stack, "casestore", retry_time_scale=0.0001) as other, \
            aiohttp.ClientSession(base_url=other.url("casestore"), headers={
                "Authorization": f"Bearer {settings.admin_token}"}) as api:
        automation, case = await setup(api, attempts=2)
        await played.request(automation, case)
        await played.report(await played.due(), 429, retry_after=1.5)
        await played.none_due(1.2)  # scaled, it would have been 0.15 ms
        assert (await played.due(within=5)).number == 2


async def test_max_per_second_spaces_an_endpoints_attempts(
        api: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    automation, case = await setup(api, max_per_second=2)
    for _ in range(5):
        await played.request(automation, case)
    times = []
    for _ in range(5):
        due = await played.due(within=5)
        times.append(asyncio.get_running_loop().time())
        await played.report(due, 200)
    # Five at two a second take two seconds at least (generous for a noisy machine).
    assert times[-1] - times[0] > 1.5


async def test_a_lost_attempt_is_handed_out_again_after_its_lease(
        settings: Settings, stack: Stack, played: PlayedDispatcher) -> None:
    """A dispatcher that died mid-attempt never reports: the attempt goes out again."""
    async with replaced(stack, "casestore", delivery_lease_margin_seconds=0.5) as other, \
            aiohttp.ClientSession(base_url=other.url("casestore"), headers={
                "Authorization": f"Bearer {settings.admin_token}"}) as api:
        automation, case = await setup(api)  # timeout 30: the lease is 30.5 s
        await call(api, "PUT", f"/api/automations/{automation['id']}", 200,
                   with_settings(definition(name=automation["name"]), timeout=10))
        await played.request(automation, case)
        lost = await played.due()
        again = await played.due(within=15)  # 10.5 s later
        assert (again.delivery_id, again.number) == (lost.delivery_id, lost.number)
        assert again.lease_until > lost.lease_until


async def test_replay_sends_again_with_the_numbering_continued(
        api: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    automation, case = await setup(api, attempts=1)
    delivery_id = await played.request(automation, case)
    await played.report(await played.due(), 500)
    await shown(api, delivery_id, "failed")
    answer = await call(api, "POST", f"/api/deliveries/{delivery_id}/replay", 202)
    assert answer == {"delivery_id": str(delivery_id), "replay": "requested"}
    again = await played.due()
    assert (again.delivery_id, again.number, again.webhook_id) == \
        (delivery_id, 2, f"msg_{delivery_id.hex}")
    await call(api, "POST", f"/api/deliveries/{delivery_id}/replay", 409)  # on its way
    await played.report(again, 200)
    done = await shown(api, delivery_id, "succeeded")
    assert [a["number"] for a in done["attempts"]] == [1, 2]


async def test_bulk_replay_takes_the_failed_ones_of_a_time_window(
        api: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    automation, case = await setup(api, attempts=1)
    ids = []
    for status in (500, 500, 200, 500):
        ids.append(await played.request(automation, case))
        await played.report(await played.due(), status)
        await shown(api, ids[-1], "succeeded" if status == 200 else "failed")
    created = [datetime.fromisoformat((await shown(api, i))["created_at"]) for i in ids]
    path = f"/api/automations/{automation['id']}/replay"
    answer = await call(api, "POST", path, 202, {"state": "failed",
                                                 "since": created[1].isoformat()})
    assert answer == {"automation_id": automation["id"], "replayed": 2}
    replayed = {d.delivery_id for d in await played.dues(2)}
    assert replayed == {ids[1], ids[3]}
    await call(api, "POST", path, 400, {"state": "nope"})
    await call(api, "POST", path, 400, {"since": "yesterday"})
    await call(api, "POST", f"/api/automations/{uuid.uuid4()}/replay", 404, {})


async def test_deleting_the_automation_keeps_its_log_and_fails_what_waited(
        api: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    automation, case = await setup(api)
    sent = await played.request(automation, case)
    await played.report(await played.due(), 200)
    await shown(api, sent, "succeeded")
    await call(api, "POST", f"/api/automations/{automation['id']}/disable", 200)
    waiting = await played.request(automation, case)
    await shown(api, waiting, "pending")
    await call(api, "DELETE", f"/api/automations/{automation['id']}", 200)
    kept = await shown(api, sent, "succeeded")
    assert kept["automation_name"] == automation["name"]
    assert (await shown(api, waiting, "failed"))["attempt_count"] == 0
    late = await played.request(automation, case)  # fired just before the delete
    await asyncio.sleep(0.5)
    await call(api, "GET", f"/api/deliveries/{late}", 404)


async def test_once_grants_only_the_first_delivery_for_a_case(
        api: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    automation, case = await setup(api)
    first = await played.request(automation, case, once=True)
    await played.request(automation, case, once=True)
    assert (await played.due()).delivery_id == first
    await played.none_due(0.5)


async def test_once_grants_exactly_one_of_many_concurrent_requests(
        api: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    """Redelivered and racing case events alike: one send per (automation, case)."""
    automation, case = await setup(api)
    other_case = await new_case(api, automation["form_id"])
    requested = await asyncio.gather(*(played.request(automation, case, once=True)
                                       for _ in range(20)))
    await played.request(automation, other_case, once=True)
    granted = [d.delivery_id for d in await played.dues(2)]
    await played.none_due(0.5)
    assert len(set(granted) & set(requested)) == 1


async def test_a_report_that_overtakes_its_request_waits_for_it(
        settings: Settings, api: aiohttp.ClientSession, played: PlayedDispatcher) -> None:
    """With two casestore replicas (or a message held through an outage), the report of a
    first attempt the dispatcher sent itself can be applied before its delivery's request:
    it waits for the request instead of being dropped, which left the delivery `sending`
    until its lease ran out and sent it again."""
    automation, case = await setup(api)
    delivery_id = uuid.uuid4()
    request = DeliveryRequested(
        delivery_id=delivery_id, automation_id=automation["id"], event_id=uuid.uuid4(),
        webhook_id=f"msg_{delivery_id.hex}", case=snapshot(case),
        first_attempt_until=datetime.now(UTC) + timedelta(seconds=70))
    report = DeliveryAttempted(delivery_id=delivery_id, automation_id=automation["id"],
                               attempt=attempt(1, 200), verdict="succeeded")
    for routing_key, payload in ((DELIVERY_ATTEMPTED, DeliveryReports(reports=[report])),
                                 (DELIVERY_REQUESTED, DeliveryRequests(requests=[request]))):
        await publish_raw(settings, routing_key, [new_event(
            routing_key, payload, form_id=automation["form_id"]).to_bytes()])
        await asyncio.sleep(1.0)  # the report arrives a second before its request
    done = await shown(api, delivery_id, "succeeded", within=5)
    assert [a["id"] for a in done["attempts"]] == [str(report.attempt.id)]
    await played.none_due(1.0)  # nothing is handed out again
