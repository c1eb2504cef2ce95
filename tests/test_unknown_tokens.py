"""Unknown webhook tokens cost no database query each, and look exactly like disabled ones."""

import asyncio
import secrets
import time

import aiohttp

from services.ingest.forms_cache import FormCache
from services.ingest.keys import CACHE
from shared.db import create_pool
from shared.secrets import token_index_key
from shared.settings import Settings
from tests.faults import proxied_ingest
from tests.helpers import FormFactory, until
from tests.stack import Stack

RATE = 5.0  # reads a second, and as many in a burst


def cache_of(stack: Stack) -> FormCache:
    return stack.runners["ingest"].app[CACHE]


async def post_status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.post(url, json={"text-field": "x"}) as resp:
        return resp.status


async def flood(http: aiohttp.ClientSession, base: str, count: int) -> list[int]:
    return await asyncio.gather(*(post_status(http, f"{base}/hooks/{secrets.token_urlsafe(24)}")
                                  for _ in range(count)))


async def test_a_flood_of_unknown_tokens_costs_a_bounded_number_of_database_reads(
        settings: Settings, stack: Stack, http: aiohttp.ClientSession) -> None:
    async with proxied_ingest(settings, token_lookups_per_second=RATE) as ingest:
        cache = cache_of(ingest.stack)
        reads, misses, started = cache.token_lookups, cache.misses, time.monotonic()
        statuses = await flood(http, ingest.url(""), 300)
        elapsed = time.monotonic() - started
        assert statuses == [404] * 300
        assert cache.misses - misses == 300
        assert cache.token_lookups - reads <= RATE + RATE * elapsed + 1, (
            f"{cache.token_lookups - reads} reads in {elapsed:.2f} s")


async def test_a_webhook_made_a_moment_ago_is_found_on_its_first_request_during_a_flood(
        settings: Settings, make_form: FormFactory) -> None:
    """A cache loaded before the webhook existed, and deaf to form.changed: only the read of
    recent webhooks can find it."""
    pool = await create_pool(settings)
    try:
        cache = FormCache(pool, RATE, token_index_key(settings.signing_key))
        await cache.reload()
        hook = await make_form()
        unknown = [cache.lookup(secrets.token_urlsafe(24)) for _ in range(300)]
        *floods, found = await asyncio.gather(*unknown, cache.lookup(hook["token"]))
        await cache.close()
    finally:
        await pool.close()
    assert floods == [None] * 300
    assert found is not None
    assert (found.form.id, found.enabled) == (hook["form_id"], True)
    assert cache.token_lookups <= 2  # one read for all 301 (a second if a miss came late)


async def test_unknown_and_disabled_tokens_get_the_same_answer_by_the_same_path(
        stack: Stack, make_form: FormFactory, http: aiohttp.ClientSession,
        api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with api.put(f"/api/forms/{hook['form_id']}/incoming-webhook",
                       json={"enabled": False, "authenticate_user": False}) as resp:
        assert resp.status == 200
    cache = cache_of(stack)

    async def disabled_in_the_cache() -> bool:
        return await post_status(http, hook["url"]) == 404

    await until(disabled_in_the_cache, 5)
    answers = []
    for url in (hook["url"], f"{stack.url('ingest')}/hooks/{secrets.token_urlsafe(24)}"):
        misses = cache.misses
        async with http.post(url, json={"text-field": "x"}) as resp:
            headers = {k for k in resp.headers if k not in ("Date", "X-Correlation-ID")}
            answers.append((resp.status, await resp.read(), headers))
        assert cache.misses == misses + 1  # both waited for the same kind of read
    assert answers[0] == answers[1]
    assert answers[0][0] == 404
