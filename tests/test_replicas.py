"""Two replicas of every service at once, on one database and one set of queues: each case is
made once, published once (the outbox), delivered once, and its timer fires once, whichever
ingest took it and whichever casestore and dispatcher did the work.

`make topology` does the same from the image under load (scenario replicas-steady), and with
a fault in each of the other scenarios.
"""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson
import pytest

from shared.events import CASE_CREATED
from shared.settings import Settings
from tests.helpers import (
    AutomationFactory,
    FormFactory,
    tap_events,
    wait_for_cases,
    webhook_action,
)
from tests.receiver import Receiver
from tests.stack import Stack, free_port

CASES = 40


@pytest.fixture
async def second(stack: Stack, settings: Settings) -> AsyncIterator[Stack]:
    """A second replica of each service beside the session's, on ports of its own."""
    ports = {name: free_port() for name in ("ingest_port", "casestore_port", "dispatcher_port")}
    replica = Stack(settings.model_copy(update=ports))
    await replica.start_all()
    try:
        yield replica
    finally:
        await replica.stop_all()


async def created_events(settings: Settings, form_id: str, within: float) -> Counter[str]:
    """case.created events of the form seen on a tap, by case id, until `within` passes."""
    seen: Counter[str] = Counter()
    async with tap_events(settings, CASE_CREATED) as tap:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            message = await tap.queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            event = orjson.loads(message.body)
            if event["form_id"] == form_id:
                seen[event["case_id"]] += 1
    return seen


@pytest.mark.timeout(180)
async def test_two_replicas_of_each_service_do_everything_once(
        stack: Stack, second: Stack, settings: Settings, make_form: FormFactory,
        make_automation: AutomationFactory, receiver: Receiver,
        http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    sent_to, timed_to = receiver.endpoint(), receiver.endpoint()
    await make_automation(hook["form_id"], sent_to)
    await make_automation(hook["form_id"], timed_to,
                          when=[{"event": "date_reached", "field": "seen-at"}],
                          action=webhook_action(timed_to))
    path = "/" + hook["url"].split("/", 3)[3]
    seen_at = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
    events = asyncio.create_task(created_events(settings, hook["form_id"], within=20))
    await asyncio.sleep(0.5)  # the tap is bound before the first case

    async def post(n: int) -> None:
        ingest = (stack, second)[n % 2].url("ingest")
        async with http.post(f"{ingest}{path}", json={"text-field": f"r-{n}",
                                                      "seen-at": seen_at}) as resp:
            assert resp.status == 200, await resp.text()

    await asyncio.gather(*(post(n) for n in range(CASES)))
    cases = await wait_for_cases(api, hook["form_id"], CASES)
    assert sorted(c["case_number"] for c in cases) == list(range(1, CASES + 1))
    sent = await receiver.wait_for(sent_to, CASES, within=30)
    timed = await receiver.wait_for(timed_to, CASES, within=30)
    published = await events
    await asyncio.sleep(2)  # anything sent twice would arrive meanwhile
    for arrivals in (receiver.at(sent_to), receiver.at(timed_to)):
        assert len(arrivals) == CASES
        assert len({a.headers["webhook-id"] for a in arrivals}) == CASES
        assert sorted(a.json()["text"] for a in arrivals) == sorted(f"r-{n}" for n in
                                                                   range(CASES))
    assert len(sent) == len(timed) == CASES
    assert published == Counter({c["id"]: 1 for c in cases})
