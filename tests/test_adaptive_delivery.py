"""Outgoing webhooks to receivers that behave like distant ones (answers after 100-300 ms, 429s
above a capacity, outages that end), through the real services: each endpoint's limit of
requests in flight adapts, within its automation's ceiling, and nothing is lost on the way."""

import asyncio
import statistics
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from services.dispatcher.api import DEPENDENCIES
from services.dispatcher.in_flight import InFlight
from tests.faults import replaced
from tests.helpers import AutomationFactory, FormFactory, call, until, webhook_action
from tests.receiver import Capacity, Receiver, Reply
from tests.stack import Stack


@pytest.fixture
async def make_automation(api: aiohttp.ClientSession,
                          make_automation: AutomationFactory) -> AsyncIterator[AutomationFactory]:
    """As the shared one, and deleted at the end: a backlog left by a failed test must not
    keep the dispatcher busy for the next."""
    made: list[dict[str, Any]] = []

    async def factory(form_id: str, url: str, **overrides: Any) -> dict[str, Any]:
        made.append(await make_automation(form_id, url, **overrides))
        return made[-1]

    yield factory
    for automation in made:
        await call(api, "DELETE", f"/api/automations/{automation['id']}", 200)


def in_flight_of(stack: Stack) -> InFlight:
    in_flight: InFlight = stack.runners["dispatcher"].app[DEPENDENCIES].in_flight
    return in_flight


async def post_cases(http: aiohttp.ClientSession, hook: dict[str, Any], count: int,
                     per_second: float) -> None:
    """`count` cases through the incoming webhook at about `per_second`, as a sender would."""

    async def post(n: int) -> None:
        async with http.post(hook["url"], json={"text-field": f"case {n}"}) as resp:
            assert resp.status == 200, await resp.text()

    posts = []
    for n in range(count):
        posts.append(asyncio.create_task(post(n)))
        await asyncio.sleep(1 / per_second)
    await asyncio.gather(*posts)


async def succeeded(api: aiohttp.ClientSession, automation: dict[str, Any]) -> int:
    """How many of the automation's deliveries succeeded."""
    count = 0
    before = None
    while True:
        params = {"automation": automation["id"], "state": "succeeded", "limit": "500",
                  **({"before": before} if before else {})}
        page = await call(api, "GET", "/api/deliveries", 200, params=params)
        count += len(page["deliveries"])
        before = page["next_before"]
        if not before or not page["deliveries"]:
            return count


async def all_succeed(api: aiohttp.ClientSession, automation: dict[str, Any], count: int,
                      within: float) -> None:
    async def done() -> bool:
        return await succeeded(api, automation) == count

    await until(done, within=within, failure=f"not all {count} deliveries succeeded")


async def test_a_distant_endpoints_limit_grows_far_past_where_it_started(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        http: aiohttp.ClientSession, receiver: Receiver, stack: Stack) -> None:
    """A receiver answering in 0.2 s is sent many requests at once: its limit is not capped at
    where it starts (10, or the fixed 4 it once was), so a backlog of 200 cases (the
    dispatcher was away) goes out at the pace the receiver can take."""
    hook = await make_form()
    url = receiver.endpoint(Reply(delay=0.2))
    automation = await make_automation(hook["form_id"], url)
    await stack.stop("dispatcher")
    try:
        await post_cases(http, hook, 200, per_second=1000)
    finally:
        await stack.start("dispatcher")
    await all_succeed(api, automation, 200, within=60)
    initial = stack.settings.endpoint_initial_concurrency
    assert receiver.peak[receiver.path(url)] > 3 * initial
    health = (await call(api, "GET", f"/api/automations/{automation['id']}", 200))["health"]
    assert health["concurrency_limit"] > 3 * initial  # reported, and sizes casestore's window
    assert len({r.headers["webhook-id"] for r in receiver.at(url)}) == 200


async def test_a_receiver_that_refuses_above_its_capacity_gets_about_that_many(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        http: aiohttp.ClientSession, receiver: Receiver, stack: Stack) -> None:
    """Above 20 concurrent requests the receiver answers 429 (Retry-After: 1) to a backlog of
    900 cases (0.3 s an answer): the limit falls to about 20 within seconds and the receiver
    sees about that many; when its capacity comes back, the limit grows past it again. Every
    delivery gets through."""
    hook = await make_form()
    url = receiver.endpoint(Reply(delay=0.3))
    path = receiver.path(url)
    receiver.capacity[path] = Capacity(20)
    automation = await make_automation(hook["form_id"], url, action=webhook_action(
        url, retry="extended"))
    await stack.stop("dispatcher")
    try:
        await post_cases(http, hook, 900, per_second=150)  # within ingest's rate limit
    finally:
        await stack.start("dispatcher")
    limit = in_flight_of(stack).limit(uuid.UUID(automation["id"]))
    await asyncio.sleep(2.0)  # it has found the capacity
    seen = []
    for _ in range(60):
        seen.append(receiver.concurrent[path])
        await asyncio.sleep(0.05)
    assert statistics.median(seen) <= 24, seen
    assert limit.cut_at > 0  # it did meet the capacity
    assert limit.current <= 30
    receiver.capacity.pop(path)
    receiver.peak[path] = 0
    await all_succeed(api, automation, 900, within=120)
    assert receiver.peak[path] > 24  # it grew past it again once the refusals stopped


async def test_max_in_flight_is_the_ceiling(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        http: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(delay=0.3))
    automation = await make_automation(hook["form_id"], url, action=webhook_action(
        url, max_in_flight=3))
    await post_cases(http, hook, 30, per_second=100)
    await all_succeed(api, automation, 30, within=30)
    assert receiver.peak[receiver.path(url)] == 3


async def test_a_dispatcher_restarted_mid_burst_loses_nothing(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        http: aiohttp.ClientSession, receiver: Receiver, stack: Stack) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(delay=0.1))
    automation = await make_automation(hook["form_id"], url)
    posting = asyncio.create_task(post_cases(http, hook, 300, per_second=150))
    await receiver.wait_for(url, 60, within=30)
    await stack.stop("dispatcher")
    try:
        await asyncio.sleep(0.5)
    finally:
        await stack.start("dispatcher")
    await posting
    await all_succeed(api, automation, 300, within=90)
    assert len({r.headers["webhook-id"] for r in receiver.at(url)}) == 300


async def test_after_an_outage_with_attempts_in_flight_the_endpoint_resumes_after_one_pause(
        make_form: FormFactory, make_automation: AutomationFactory,
        http: aiohttp.ClientSession, receiver: Receiver, stack: Stack) -> None:
    """The receiver answers 503 for 3 s while cases keep coming at 50 a second, with many
    attempts in flight: the circuit opens once for its 2 s (its in-flight failures do not
    lengthen it), the probes find the receiver back, and 95% of the cases arrive soon after."""
    hook = await make_form()
    url = receiver.endpoint(Reply(delay=0.05))
    automation = await make_automation(hook["form_id"], url, action=webhook_action(
        url, attempts=3))
    async with replaced(stack, "casestore", breaker_cooldown_seconds=2.0) as other, \
            aiohttp.ClientSession(base_url=other.url("casestore"), headers={
                "Authorization": f"Bearer {stack.settings.admin_token}"}) as api:
        posting = asyncio.create_task(post_cases(http, hook, 300, per_second=50))
        await receiver.wait_for(url, 20, within=30)
        receiver.down.add(receiver.path(url))
        await asyncio.sleep(3.0)
        receiver.down.clear()
        await posting
        started = asyncio.get_running_loop().time()

        async def most_arrived() -> bool:
            ids = {r.headers["webhook-id"] for r in receiver.at(url) if r.arrived_at}
            return len(ids) >= 285 and await succeeded(api, automation) >= 285

        await until(most_arrived, within=40, failure="95% never arrived")
        # A pause doubled by each failure in flight would have taken minutes, not seconds.
        assert asyncio.get_running_loop().time() - started < 30
        health = (await call(api, "GET", f"/api/automations/{automation['id']}", 200))["health"]
        assert health["state"] == "closed"
