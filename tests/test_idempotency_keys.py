"""Idempotency-Keys: one case per key, webhook and user for a day; a reused key is refused."""

import asyncio
from typing import Any

import aiohttp

from shared.settings import Settings
from tests.faults import proxied_ingest
from tests.helpers import FormFactory, issue_key, make_user, wait_for_cases
from tests.stack import Stack


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any], key: str,
               **headers: str) -> tuple[int, Any]:
    async with http.post(url, json=body, headers={"Idempotency-Key": key, **headers}) as resp:
        return resp.status, await resp.json()


async def settled(api: aiohttp.ClientSession, form_id: str, count: int) -> list[dict[str, Any]]:
    await asyncio.sleep(1.0)  # time for a case that should not come
    return await wait_for_cases(api, form_id, count)


async def test_the_same_key_and_body_again_is_200_and_makes_one_case_also_through_another_ingest(
        settings: Settings, make_form: FormFactory, http: aiohttp.ClientSession,
        api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    body = {"text-field": "order 1001"}
    assert await post(http, hook["url"], body, "order-1001") == (200, {})
    assert await post(http, hook["url"], body, "order-1001") == (200, {})
    await wait_for_cases(api, hook["form_id"], 1)
    async with proxied_ingest(settings) as other:  # knows the key from the database only
        assert await post(http, other.url(f"/hooks/{hook['token']}"), body,
                          "order-1001") == (200, {})
    [case] = await settled(api, hook["form_id"], 1)
    assert case["data"] == body


async def test_the_same_key_with_another_body_is_422_and_changes_nothing(
        settings: Settings, make_form: FormFactory, http: aiohttp.ClientSession,
        api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    assert (await post(http, hook["url"], {"text-field": "first"}, "k-1"))[0] == 200
    for url, body in ((hook["url"], {"text-field": "second"}),
                      (f"{hook['url']}/skiptriggers", {"text-field": "first"})):
        status, answer = await post(http, url, body, "k-1")
        assert (status, answer["errors"][0]["code"]) == (422, "idempotency_key_reused")
    await wait_for_cases(api, hook["form_id"], 1)
    async with proxied_ingest(settings) as other:
        status, answer = await post(http, other.url(f"/hooks/{hook['token']}"),
                                    {"text-field": "third"}, "k-1")
    assert (status, answer["errors"][0]["code"]) == (422, "idempotency_key_reused")
    [case] = await settled(api, hook["form_id"], 1)
    assert case["data"] == {"text-field": "first"}


async def test_two_users_of_an_authenticated_webhook_may_use_the_same_key(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    for name in ("alice", "bob"):
        key = await issue_key(http, hook["url"], await make_user(api, [hook["form_id"]]))
        status, _ = await post(http, hook["url"], {"text-field": name}, "order-1001",
                               **{"Auth-key": key})
        assert status == 200
    cases = await settled(api, hook["form_id"], 2)
    assert sorted(c["data"]["text-field"] for c in cases) == ["alice", "bob"]


async def test_two_webhooks_may_use_the_same_key(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hooks = [await make_form(), await make_form()]
    for hook in hooks:
        assert (await post(http, hook["url"], {"text-field": "x"}, "same"))[0] == 200
    for hook in hooks:
        await wait_for_cases(api, hook["form_id"], 1)


async def test_a_key_may_make_a_new_case_once_it_has_expired(
        settings: Settings, make_form: FormFactory, http: aiohttp.ClientSession,
        api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with proxied_ingest(settings, idempotency_ttl_seconds=1.0) as ingest:
        url = ingest.url(f"/hooks/{hook['token']}")
        assert (await post(http, url, {"text-field": "monday"}, "daily"))[0] == 200
        await wait_for_cases(api, hook["form_id"], 1)
        await asyncio.sleep(1.2)
        assert (await post(http, url, {"text-field": "tuesday"}, "daily"))[0] == 200
        await wait_for_cases(api, hook["form_id"], 2)
        await asyncio.sleep(1.2)
        assert (await post(http, url, {"text-field": "tuesday"}, "daily"))[0] == 200
    cases = await settled(api, hook["form_id"], 3)
    assert sorted(c["data"]["text-field"] for c in cases) == ["monday", "tuesday", "tuesday"]


async def test_retries_through_two_ingests_while_casestore_is_down_make_one_case(
        settings: Settings, stack: Stack, make_form: FormFactory, http: aiohttp.ClientSession,
        api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    body = {"text-field": "offline"}
    async with proxied_ingest(settings) as other:
        await stack.stop("casestore")
        try:
            assert await post(http, hook["url"], body, "offline-1") == (200, {})
            assert await post(http, other.url(f"/hooks/{hook['token']}"), body,
                              "offline-1") == (200, {})
        finally:
            await stack.start("casestore")
    [case] = await settled(api, hook["form_id"], 1)
    assert case["data"] == body


async def test_a_keyed_request_is_accepted_while_ingest_cannot_reach_the_database(
        settings: Settings, make_form: FormFactory, http: aiohttp.ClientSession,
        api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    body = {"text-field": "db down"}
    async with proxied_ingest(settings, database=True) as ingest:
        assert ingest.database is not None
        await ingest.database.cut()
        url = ingest.url(f"/hooks/{hook['token']}")
        assert await post(http, url, body, "db-down-1") == (200, {})
        assert await post(http, url, body, "db-down-1") == (200, {})
    [case] = await settled(api, hook["form_id"], 1)
    assert case["data"] == body
