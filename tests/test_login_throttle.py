"""Password guessing against auth-key requests: throttled, bounded, and never stalls casestore.

Each test guesses from its own loopback address (127.0.0.0/8 is all local on Linux), so the
per-address limit it fills never touches the 127.0.0.1 the other tests use.
"""

import asyncio
import itertools
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp
import pytest

from services.casestore.logins import HashingBusy, LoginGuard, TooManyFailures
from shared.settings import Settings
from tests.helpers import FormFactory, issue_key, make_user
from tests.stack import Stack, free_port

ADDRESSES = itertools.count(20)


def client_from(address: str) -> aiohttp.ClientSession:
    """An external system connecting from `address`."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=100)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))


def fresh_address() -> str:
    return f"127.0.{next(ADDRESSES)}.{uuid.uuid4().int % 250 + 2}"


async def guess(client: aiohttp.ClientSession, url: str, username: str,
                headers: dict[str, str] | None = None) -> tuple[int, str | None, Any]:
    body = {"username": username, "password": f"guess-{uuid.uuid4().hex}"}
    async with client.post(url, json=body, headers=headers) as resp:
        return resp.status, resp.headers.get("Retry-After"), await resp.json()


async def timed(coro: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = await coro
    return time.monotonic() - started, result


async def test_a_flood_of_wrong_guesses_is_throttled_and_casestore_stays_responsive(
        settings: Settings, make_form: FormFactory, api: aiohttp.ClientSession,
        http: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    victim = await make_user(api, [hook["form_id"]])
    other = await make_user(api, [hook["form_id"]])
    async with client_from(fresh_address()) as attacker:
        flood = asyncio.gather(*(guess(attacker, hook["url"], victim["username"])
                                 for _ in range(40)))
        await asyncio.sleep(0.05)  # the guesses are in flight

        async def list_forms() -> int:
            async with api.get("/api/forms") as resp:
                return resp.status

        admin_took, admin_status = await timed(list_forms())
        login_took, key = await timed(issue_key(http, hook["url"], other))
        answers = await flood
    assert admin_status == 200
    assert admin_took < 2.0, f"GET /api/forms took {admin_took:.1f} s during the flood"
    assert key
    assert login_took < 3.0, f"a real user's login took {login_took:.1f} s"
    statuses = Counter(status for status, _, _ in answers)
    assert set(statuses) == {400, 429}, statuses
    limit = settings.login_failures_per_user_per_minute
    assert statuses[400] == limit
    for status, retry_after, body in answers:
        if status == 429:
            assert body["errors"][0]["code"] == "rate_limited"
            assert retry_after is not None
            assert 1 <= int(retry_after) <= 60
    # The victim's own correct password is refused too until the window passes: a guesser
    # must not learn from the answer whether a guess was right.
    async with http.post(hook["url"], json=victim) as resp:
        assert resp.status == 429


async def test_wrong_guesses_for_many_users_from_one_address_are_throttled_by_address(
        settings: Settings, make_form: FormFactory, api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    limit = settings.login_failures_per_address_per_minute
    async with client_from(fresh_address()) as attacker:
        answers = await asyncio.gather(*(guess(attacker, hook["url"], f"u-{i}")
                                         for i in range(limit + 5)))
    statuses = Counter(status for status, _, _ in answers)
    assert statuses == {400: limit, 429: 5}
    async with client_from(fresh_address()) as elsewhere:
        assert (await guess(elsewhere, hook["url"], "u-0"))[0] == 400


async def test_a_successful_login_is_no_failure(
        settings: Settings, make_form: FormFactory, api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    creds = await make_user(api, [hook["form_id"]])
    async with client_from(fresh_address()) as client:
        for _ in range(settings.login_failures_per_user_per_minute + 1):
            assert await issue_key(client, hook["url"], creds)


async def test_behind_a_trusted_proxy_a_guesser_locks_out_only_its_own_address(
        settings: Settings, make_form: FormFactory, api: aiohttp.ClientSession,
        http: aiohttp.ClientSession) -> None:
    """Behind the Ingress every connection to ingest comes from the proxy: keyed on that
    address, 20 wrong passwords from anyone locked every user out."""
    hook = await make_form(authenticate_user=True)
    user = await make_user(api, [hook["form_id"]])
    behind_proxy = Stack(settings.model_copy(update={
        "ingest_port": free_port(), "trusted_proxies": ["127.0.0.0/8"]}))
    await behind_proxy.start("ingest")
    try:
        url = f"{behind_proxy.url('ingest')}/hooks/{hook['token']}"
        limit = settings.login_failures_per_address_per_minute
        guesser = {"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250 + 1}"}
        answers = [await guess(http, url, f"u-{i}", guesser) for i in range(limit + 1)]
        assert [status for status, _, _ in answers] == [400] * limit + [429]
        async with http.post(url, json=user,
                             headers={"X-Forwarded-For": "203.0.113.77"}) as resp:
            assert resp.status == 200  # the same proxy, another client
    finally:
        await behind_proxy.stop("ingest")


async def test_without_trusted_proxies_a_forwarded_address_is_not_believed(
        settings: Settings, make_form: FormFactory) -> None:
    hook = await make_form(authenticate_user=True)
    limit = settings.login_failures_per_address_per_minute
    async with client_from(fresh_address()) as attacker:
        answers = [await guess(attacker, hook["url"], f"u-{i}",
                               {"X-Forwarded-For": f"198.51.100.{i + 1}"})
                   for i in range(limit + 1)]
    assert [status for status, _, _ in answers] == [400] * limit + [429]


# The guard itself: how many hashes run at once, and how long a request waits for one.

def guard(**overrides: Any) -> LoginGuard:
    values: dict[str, Any] = {"admin_token": "x", "signing_key": "y", **overrides}
    return LoginGuard(Settings(**values))


async def test_hashing_runs_at_most_the_configured_number_at_once() -> None:
    bounded = guard(password_hash_concurrency=2)
    running, peak = 0, 0

    def work(_: str) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        time.sleep(0.05)
        running -= 1

    await asyncio.gather(*(bounded.hash(work, "pw") for _ in range(8)))
    assert peak == 2


async def test_a_request_that_waits_too_long_for_a_hashing_slot_is_turned_away() -> None:
    bounded = guard(password_hash_concurrency=1, password_hash_wait_seconds=0.1)

    def hold(_: str) -> None:
        time.sleep(0.5)

    slow = asyncio.create_task(bounded.hash(hold, "pw"))
    await asyncio.sleep(0.05)
    with pytest.raises(HashingBusy):
        await bounded.hash(str.upper, "pw")
    await slow


def test_failures_expire_after_a_minute_and_retry_after_says_when() -> None:
    limited = guard(login_failures_per_user_per_minute=2)
    for _ in range(2):
        with limited.attempt("alice", "192.0.2.1") as attempt:
            attempt.failed = True
    with pytest.raises(TooManyFailures) as refused, limited.attempt("alice", "192.0.2.2"):
        pass
    assert 59 <= refused.value.retry_after <= 60
    later = time.monotonic() + 61
    assert limited.users.wait("alice", later) is None
