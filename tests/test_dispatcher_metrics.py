"""The delivery engine on the dispatcher's /metrics, scraped around real deliveries to a real
receiver. The counters are the whole test process's, so every check is a difference."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import AutomationFactory, FormFactory, call, new_case, until, webhook_action
from tests.receiver import Receiver, Reply
from tests.stack import Stack
from tests.test_delivery_engine import delivery_of

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(stack: Stack) -> Samples:
    async with aiohttp.ClientSession() as http, \
            http.get(f"{stack.url('dispatcher')}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def reaches(stack: Stack, name: str, target: float, within: float = 10.0,
                  **labels: str) -> None:
    """Until the metric shows `target` (the gauges read from Postgres lag a refresh)."""

    async def probe() -> bool:
        return value(await scrape(stack), name, **labels) == target

    await until(probe, within=within)


async def delete(api: aiohttp.ClientSession, automation: dict[str, Any]) -> None:
    await call(api, "DELETE", f"/api/automations/{automation['id']}", 200)


@pytest.fixture
async def stuck() -> AsyncIterator[Receiver]:
    """A receiver of its own, so releasing its hanging requests touches no other test."""
    running = Receiver()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_a_503_then_a_200_counts_one_retry_and_one_success_and_times_both(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=503), Reply())
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, attempts=2))
    before = await scrape(stack)
    await new_case(api, hook["form_id"])
    await delivery_of(api, automation, "succeeded")
    after = await scrape(stack)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    attempts = "casewire_delivery_attempts_total"
    assert [moved(attempts, verdict=v) for v in ("succeeded", "retry", "final", "gone")] == [
        1, 1, 0, 0]
    assert moved("casewire_delivery_attempt_seconds_count") == 2
    assert 0 < moved("casewire_delivery_attempt_seconds_sum") < 10
    assert moved("casewire_delivery_attempt_seconds_bucket", le="60.0") == 2


async def test_an_attempt_to_a_hanging_receiver_is_in_flight_until_it_answers(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, stuck: Receiver) -> None:
    hook = await make_form()
    url = stuck.endpoint(Reply(hang=True))
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, timeout=30))
    gauge = "casewire_delivery_requests_in_flight"
    before = value(await scrape(stack), gauge)
    await new_case(api, hook["form_id"])
    await stuck.wait_for(url, 1)
    await reaches(stack, gauge, before + 1)
    stuck.release.set()
    await delivery_of(api, automation, "succeeded")
    await reaches(stack, gauge, before)


async def test_a_retrying_delivery_shows_in_the_backlog_after_a_refresh(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=503, headers={"Retry-After": "30"}), Reply())
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, attempts=2))
    gauge = "casewire_deliveries_waiting"
    before = await scrape(stack)
    await new_case(api, hook["form_id"])
    await delivery_of(api, automation, "retrying")
    await reaches(stack, gauge, value(before, gauge, state="retrying") + 1, state="retrying")
    await delete(api, automation)  # what waits is failed: the backlog is back where it was
    await reaches(stack, gauge, value(before, gauge, state="retrying"), state="retrying")


async def test_an_endpoint_whose_circuit_opened_counts_as_paused(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=500))
    automation = await make_automation(hook["form_id"], url)
    gauge = "casewire_endpoints_paused"
    before = value(await scrape(stack), gauge)
    for _ in range(stack.settings.breaker_failures):
        await new_case(api, hook["form_id"])
    await receiver.wait_for(url, stack.settings.breaker_failures)
    await reaches(stack, gauge, before + 1)
    await new_case(api, hook["form_id"])  # waits for the pause to end: its age shows
    oldest = "casewire_delivery_oldest_due_seconds"

    async def waited() -> bool:
        return value(await scrape(stack), oldest, automation_id=automation["id"]) > 0.5

    await until(waited)
    await delete(api, automation)
    await reaches(stack, gauge, before)
    await reaches(stack, oldest, 0, automation_id=automation["id"])  # nothing due: no series


async def test_an_endpoints_limit_in_flight_and_time_since_the_case_change_are_shown(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(delay=0.5))
    automation = await make_automation(hook["form_id"], url)
    of_it = {"automation_id": automation["id"]}
    await new_case(api, hook["form_id"])
    await receiver.wait_for(url, 1)
    during = await scrape(stack)
    assert value(during, "casewire_endpoint_requests_in_flight", **of_it) == 1
    assert value(during, "casewire_endpoint_concurrency_limit", **of_it) == \
        stack.settings.endpoint_initial_concurrency
    await delivery_of(api, automation, "succeeded")
    after = await scrape(stack)
    assert value(after, "casewire_endpoint_requests_in_flight", **of_it) == 0
    since = "casewire_delivery_seconds_since_case_change"
    assert value(after, f"{since}_count", **of_it) == 1
    assert 0.5 <= value(after, f"{since}_sum", **of_it) < 10


async def test_an_automation_disabled_by_a_410_counts_as_disabled_gone(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=410))
    automation = await make_automation(hook["form_id"], url)
    gauge = "casewire_automations_disabled"
    before = await scrape(stack)
    await new_case(api, hook["form_id"])
    await delivery_of(api, automation, "failed")
    await reaches(stack, gauge, value(before, gauge, reason="gone") + 1, reason="gone")
    assert value(await scrape(stack), gauge, reason="failing") == value(
        before, gauge, reason="failing")
    # Disabled through the API is the operator's doing, not the engine's: not counted.
    other = await make_automation(hook["form_id"], receiver.endpoint())
    await call(api, "POST", f"/api/automations/{other['id']}/disable", 200)
    await asyncio.sleep(3 * stack.settings.metrics_refresh_seconds)
    assert value(await scrape(stack), gauge, reason="gone") == value(
        before, gauge, reason="gone") + 1
    await delete(api, automation)
    await reaches(stack, gauge, value(before, gauge, reason="gone"), reason="gone")
