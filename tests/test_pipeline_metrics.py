"""The pipeline on /metrics, scraped around real requests and messages. The stack's services run in
this one process, so their metrics are one registry; every check is a difference, or a gauge
reaching a value (gauges are read in the background every CASEWIRE_PIPELINE_METRICS_SECONDS)."""

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.ingest.metrics import outcome
from shared.event_payloads import CaseCreateRequested
from shared.events import CASE_CREATE_REQUESTED, new_event
from shared.settings import Settings
from tests.faults import CuttableProxy, replaced
from tests.helpers import (
    FormFactory,
    processed,
    publish_event,
    publish_raw,
    until,
    wait_dead_lettered,
    wait_for_cases,
)
from tests.stack import Stack

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def reaches(url: str, name: str, check: object, within: float = 10.0,
                  **labels: str) -> float:
    """Until the metric passes `check` (a value, or a predicate); returns what it showed."""

    async def probe() -> list[float]:
        shown = value(await scrape(url), name, **labels)
        passed = check(shown) if callable(check) else shown == check
        return [shown] if passed else []  # truthy even when the value is 0

    [result] = await until(probe, within=within)
    return float(result)


def queue(settings: Settings, name: str) -> str:
    return f"{settings.name_prefix}.{name}"


async def test_every_service_shows_every_queue_with_its_consumers(
        stack: Stack, settings: Settings) -> None:
    def key(metric: str, name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return metric, (("queue", queue(settings, name)),)

    # Unacked counts come from the consumers themselves, each set by its own service's read.
    wanted = [key(metric, name) for name in ("casestore", "dispatcher", "dead-letters")
              for metric in ("casewire_queue_messages_ready", "casewire_queue_consumers",
                             "casewire_queue_messages_unacked")]
    for service in ("ingest", "casestore", "dispatcher"):
        await reaches(stack.url(service), "casewire_queue_consumers", 1,
                      queue=queue(settings, "casestore"))

        async def complete(url: str = stack.url(service)) -> Samples | None:
            samples = await scrape(url)
            return samples if all(k in samples for k in wanted) else None

        samples = await until(complete, failure=f"{service} never showed every queue gauge")
    assert value(samples, "casewire_queue_consumers", queue=queue(settings, "dead-letters")) == 0
    assert value(samples, "casewire_queue_consumers", queue=queue(settings, "dispatcher")) == 1


async def test_a_case_moves_the_ingest_outcomes_commands_applied_and_publish_confirms(
        stack: Stack, make_form: FormFactory, api: aiohttp.ClientSession,
        http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    before = await scrape(stack.url("ingest"))
    async with http.post(hook["url"], json={"text-field": "counted"}) as resp:
        assert resp.status == 200
    async with http.post(hook["url"], json={"email": "no-text@example.com"}) as resp:
        assert resp.status == 400
    async with http.post(hook["url"] + "x", json={"text-field": "unknown"}) as resp:
        assert resp.status == 404
    await wait_for_cases(api, hook["form_id"], 1)
    after = await scrape(stack.url("ingest"))

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    cases = "casewire_ingest_cases_total"
    assert [moved(cases, outcome=o) for o in ("accepted", "field_required", "not_found")] == [
        1, 1, 1]
    assert moved("casewire_commands_applied_total") >= 1
    # The command from ingest, and casestore's case.created from the outbox: the case is
    # readable once committed, which can be before the relay's publish is confirmed.
    confirms = "casewire_publish_confirm_seconds"
    start = value(before, f"{confirms}_count")
    await reaches(stack.url("ingest"), f"{confirms}_count", lambda shown: shown - start >= 2)
    start = value(before, f"{confirms}_bucket", le="10.0")
    await reaches(stack.url("ingest"), f"{confirms}_bucket", lambda shown: shown - start >= 2,
                  le="10.0")


def test_an_answer_counts_as_its_error_code() -> None:
    def body(code: str) -> bytes:
        return orjson.dumps({"errors": [{"field": None, "code": code, "message": "m"}]})

    assert outcome(200, b"{}") == "accepted"
    assert outcome(429, body("rate_limited")) == "rate_limited"
    assert outcome(503, body("outcome_unknown")) == "outcome_unknown"
    assert outcome(413, b"not json") == "unknown"


async def test_a_command_delivered_twice_is_applied_once_and_skipped_once(
        stack: Stack, settings: Settings, make_form: FormFactory) -> None:
    hook = await make_form()
    event = new_event(CASE_CREATE_REQUESTED, CaseCreateRequested(
        webhook_id=uuid.uuid4(), data={"text-field": "twice"}, creator="test"),
        form_id=hook["form_id"])
    before = await scrape(stack.url("casestore"))
    await publish_event(settings, event)
    await processed(settings, event.id)
    await publish_event(settings, event)
    skipped = value(before, "casewire_duplicates_skipped_total") + 1
    await reaches(stack.url("casestore"), "casewire_duplicates_skipped_total",
                  lambda shown: shown >= skipped)
    after = await scrape(stack.url("casestore"))
    assert value(after, "casewire_commands_applied_total") - value(
        before, "casewire_commands_applied_total") >= 1


@pytest.mark.parametrize(("reason", "body"), [
    ("unparseable", lambda marker: b"not an envelope " + marker),
    ("permanent", lambda marker: new_event(CASE_CREATE_REQUESTED, CaseCreateRequested(
        webhook_id=uuid.uuid4(), data={"text-field": marker.decode()}, creator="test"),
        form_id=f"gone-{marker.decode()}").to_bytes()),
])
async def test_a_dead_lettered_message_moves_the_counter_and_the_dead_letter_queue(
        stack: Stack, settings: Settings, reason: str, body: object) -> None:
    url, dead = stack.url("casestore"), queue(settings, "dead-letters")
    marker = uuid.uuid4().hex.encode()
    before = await scrape(url)
    waiting = value(before, "casewire_queue_messages_ready", queue=dead)
    assert callable(body)
    await publish_raw(settings, CASE_CREATE_REQUESTED, [body(marker)])
    await reaches(url, "casewire_dead_letters_total",
                  value(before, "casewire_dead_letters_total", reason=reason) + 1, reason=reason)
    await reaches(url, "casewire_queue_messages_ready", waiting + 1, queue=dead)
    await wait_dead_lettered(settings, marker)  # taken away again
    await reaches(url, "casewire_queue_messages_ready", waiting, queue=dead)


@pytest.fixture
async def broker_proxy(settings: Settings) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy(urlsplit(settings.amqp_url).port or 5672)
    await proxy.start()
    try:
        yield proxy
    finally:
        proxy.thaw_replies()
        await proxy.cut()


async def test_events_the_broker_does_not_confirm_wait_in_the_outbox_and_age(
        stack: Stack, settings: Settings, broker_proxy: CuttableProxy) -> None:
    through = f"amqp://guest:guest@127.0.0.1:{broker_proxy.port}/"
    async with replaced(stack, "casestore", amqp_url=through, publish_timeout=30) as other:
        url = other.url("casestore")
        await reaches(url, "casewire_outbox_waiting", 0)
        broker_proxy.freeze_replies()
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(
                "INSERT INTO outbox (event_id, routing_key, envelope) VALUES ($1, $2, $3)",
                uuid.uuid4(), "test.bound-to-no-queue", '{"note": "waits for a confirm"}')
        finally:
            await conn.close()
        await reaches(url, "casewire_outbox_waiting", 1)
        await reaches(url, "casewire_outbox_oldest_seconds", lambda age: age >= 1.0)
        broker_proxy.thaw_replies()
        await reaches(url, "casewire_outbox_waiting", 0, within=30)
        await reaches(url, "casewire_outbox_oldest_seconds", 0)
