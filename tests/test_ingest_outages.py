"""ingest during broker and database outages: 503s that tell the truth, readiness that does."""

import asyncio
import time
from typing import Any

import aiohttp

from shared.settings import Settings
from tests.faults import proxied_ingest
from tests.helpers import FormFactory, issue_key, make_user, wait_for_cases, wait_ready


async def post_with(http: aiohttp.ClientSession, url: str, body: dict[str, Any],
                    headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any],
               key: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    return await post_with(http, url, body, {"Idempotency-Key": key} if key else {})


async def test_post_while_the_broker_is_known_down_answers_unavailable_at_once(
        settings: Settings, make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with proxied_ingest(settings, publish_timeout=5.0) as ingest:
        url = ingest.url(f"/hooks/{hook['token']}")
        assert (await post(http, url, {"text-field": "before"}))[0] == 200
        await ingest.broker.cut()
        await wait_ready(http, ingest, 503)
        started = time.monotonic()
        status, body, headers = await post(http, url, {"text-field": "during"})
        elapsed = time.monotonic() - started
    assert (status, body["errors"][0]["code"]) == (503, "unavailable")
    assert "nothing was created" in body["errors"][0]["message"]
    assert headers["Retry-After"] == "1"
    assert elapsed < 2.5, f"took {elapsed:.2f} s of a 5 s publish timeout"


async def test_a_confirm_that_never_comes_answers_outcome_unknown_and_a_keyed_retry_makes_one_case(
        settings: Settings, make_form: FormFactory, http: aiohttp.ClientSession,
        api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with proxied_ingest(settings, publish_timeout=1.0) as ingest:
        url = ingest.url(f"/hooks/{hook['token']}")
        ingest.broker.freeze_replies()  # the broker gets the message; its confirm is held
        status, body, headers = await post(http, url, {"text-field": "x"}, key="order-1")
        assert (status, body["errors"][0]["code"]) == (503, "outcome_unknown")
        assert "Idempotency-Key" in body["errors"][0]["message"]
        assert headers["Retry-After"] == "1"
        # It was created after all: "unknown" was the honest answer, "nothing" would have lied.
        [case] = await wait_for_cases(api, hook["form_id"], 1)
        ingest.broker.thaw_replies()
        assert (await post(http, url, {"text-field": "x"}, key="order-1"))[0] == 200
    await asyncio.sleep(1)
    assert await wait_for_cases(api, hook["form_id"], 1) == [case]


async def test_ingest_stays_ready_and_accepts_cached_webhooks_while_its_database_is_down(
        settings: Settings, make_form: FormFactory, http: aiohttp.ClientSession,
        api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with proxied_ingest(settings, database=True) as ingest:
        assert ingest.database is not None
        await ingest.database.cut()  # the forms are loaded: ingest has what it needs
        async with http.get(ingest.url("/readyz")) as resp:
            assert resp.status == 200, await resp.text()
        assert (await post(http, ingest.url(f"/hooks/{hook['token']}"),
                           {"text-field": "db down"}))[0] == 200
    [case] = await wait_for_cases(api, hook["form_id"], 1)
    assert case["data"] == {"text-field": "db down"}


async def test_an_auth_key_that_cannot_be_checked_for_want_of_a_database_answers_unavailable(
        settings: Settings, make_form: FormFactory, http: aiohttp.ClientSession,
        api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    async with proxied_ingest(settings, database=True) as ingest:
        url = ingest.url(f"/hooks/{hook['token']}")
        key = await issue_key(http, url, await make_user(api, [hook["form_id"]]))
        assert ingest.database is not None
        await ingest.database.cut()
        status, body, headers = await post_with(http, url, {"text-field": "x"},
                                                {"Auth-key": key})
    assert (status, body["errors"][0]["code"]) == (503, "unavailable")
    assert headers["Retry-After"] == "1"


async def test_ingest_is_ready_after_a_broker_outage_only_once_it_can_publish(
        settings: Settings, make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with proxied_ingest(settings, publish_timeout=5.0) as ingest:
        await ingest.broker.cut()
        await wait_ready(http, ingest, 503)
        # A slow broker: the connection is back well before every channel is restored.
        ingest.broker.reply_delay = 0.1
        await ingest.broker.start()
        await wait_ready(http, ingest, 200)
        status, body, _ = await post(http, ingest.url(f"/hooks/{hook['token']}"),
                                     {"text-field": "right after ready"})
    assert status == 200, body
