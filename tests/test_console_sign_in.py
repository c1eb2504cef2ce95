"""Signing in to the console: wrong tokens throttled per address and from everyone and logged,
the address and scheme read through trusted proxies only, too short an admin token refused,
and a sign-out that ends the session on the server."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest
import structlog
from multidict import CIMultiDictProxy

from services.casestore.app import create_app
from services.casestore.console.session import COOKIE
from shared.errors import ConfigurationError
from shared.settings import Settings
from tests.console_helpers import CSRF, signed_in
from tests.stack import Stack, free_port
from tests.test_login_throttle import client_from, fresh_address

LIMITS = {"console_sign_in_failures_per_address_per_minute": 3,
          "console_sign_in_failures_per_minute": 5}


@contextlib.asynccontextmanager
async def casestore_with(stack: Stack, **overrides: Any) -> AsyncIterator[str]:
    """One more casestore on the stack's database and broker, with these settings: its
    throttles, counted in memory, are its own."""
    other = Stack(stack.settings.model_copy(update={"casestore_port": free_port(),
                                                    **overrides}))
    await other.start("casestore")
    try:
        yield other.url("casestore")
    finally:
        await other.stop("casestore")


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    cookies: SimpleCookie
    text: str


async def sign_in(base: str, token: str, headers: dict[str, str] | None = None,
                  client: aiohttp.ClientSession | None = None) -> Answer:
    async with contextlib.AsyncExitStack() as stack:
        http = client if client is not None else await stack.enter_async_context(
            aiohttp.ClientSession())
        async with http.post(f"{base}/console/sign-in", data={"token": token},
                             headers=headers or {}, allow_redirects=False) as resp:
            return Answer(resp.status, resp.headers, resp.cookies, await resp.text())


async def test_wrong_tokens_from_one_address_are_throttled_logged_and_lock_only_it(
        stack: Stack) -> None:
    base = stack.url("casestore")
    limit = stack.settings.console_sign_in_failures_per_address_per_minute
    guesser = fresh_address()
    with structlog.testing.capture_logs() as logs:
        async with client_from(guesser) as http:
            statuses = [(await sign_in(base, f"guess-{n}", client=http)).status
                        for n in range(limit + 2)]
            right = await sign_in(base, stack.settings.admin_token, client=http)
    assert statuses == [401] * limit + [429, 429]
    assert right.status == 429  # while locked, the right token too: a guess tells nothing
    assert 1 <= int(right.headers["Retry-After"]) <= 60
    failed = [e for e in logs if e["event"] == "console_sign_in_failed"]
    assert [e["client"] for e in failed] == [guesser] * limit
    assert failed[-1]["failures_from_client"] == limit
    async with client_from(fresh_address()) as http:
        assert (await sign_in(base, stack.settings.admin_token, client=http)).status == 303


async def test_wrong_tokens_from_everyone_together_are_throttled(stack: Stack) -> None:
    async with casestore_with(stack, **LIMITS) as base:
        for _ in range(LIMITS["console_sign_in_failures_per_minute"]):
            async with client_from(fresh_address()) as http:
                assert (await sign_in(base, "guess", client=http)).status == 401
        async with client_from(fresh_address()) as http:
            refused = await sign_in(base, stack.settings.admin_token, client=http)
    assert refused.status == 429
    assert "too many wrong sign-ins" in refused.text
    assert "rate_limited" in refused.text


async def test_behind_a_trusted_proxy_each_client_is_throttled_by_its_forwarded_address(
        stack: Stack) -> None:
    """Behind the Ingress every connection comes from the proxy: X-Forwarded-For names the
    client, and one guesser must not lock everyone out."""
    async with casestore_with(stack, trusted_proxies=["127.0.0.0/8"],
                              console_sign_in_failures_per_address_per_minute=3) as base:
        guesser = {"X-Forwarded-For": "198.51.100.7, 203.0.113.5"}  # the proxy appended .5
        statuses = [(await sign_in(base, "guess", guesser)).status for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        other = await sign_in(base, stack.settings.admin_token,
                              {"X-Forwarded-For": "203.0.113.6"})
        assert other.status == 303
        # The client's own left part of the header is not what the throttle keys on.
        again = await sign_in(base, "guess", {"X-Forwarded-For": "1.1.1.1, 203.0.113.5"})
        assert again.status == 429


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(stack: Stack) -> None:
    guesser = fresh_address()
    with structlog.testing.capture_logs() as logs:
        async with client_from(guesser) as http:
            resp = await sign_in(stack.url("casestore"), "guess",
                                 {"X-Forwarded-For": "203.0.113.99"}, client=http)
    assert resp.status == 401
    [failed] = [e for e in logs if e["event"] == "console_sign_in_failed"]
    assert failed["client"] == guesser


async def test_the_session_cookie_is_secure_when_a_trusted_proxy_says_https(
        stack: Stack) -> None:
    https = {"X-Forwarded-Proto": "https"}
    token = stack.settings.admin_token
    async with casestore_with(stack, trusted_proxies=["127.0.0.0/8"]) as base:
        behind_tls = await sign_in(base, token, https)
        plain = await sign_in(base, token)
    from_anyone = await sign_in(stack.url("casestore"), token, https)
    assert behind_tls.cookies[COOKIE]["secure"] is True
    assert not plain.cookies[COOKIE]["secure"]
    assert not from_anyone.cookies[COOKIE]["secure"]  # the header alone is not believed


async def test_sign_out_ends_the_session_on_the_server(stack: Stack) -> None:
    async with signed_in(stack) as console:
        csrf = await console.csrf()
        [cookie] = [c for c in console.session.cookie_jar if c.key == COOKIE]
        copied = {COOKIE: cookie.value}
        await console.post("/console/sign-out", {})
    async with aiohttp.ClientSession(cookies=copied) as replay:
        async with replay.get(console.base + "/console/forms", allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"].startswith("/console/sign-in")
        async with replay.post(console.base + "/console/forms/new", allow_redirects=False,
                               data={"csrf": csrf, "id": "f-replayed", "name": "x"}) as resp:
            assert resp.status == 403


async def test_another_session_stays_signed_in_after_one_signs_out(stack: Stack) -> None:
    async with signed_in(stack) as staying, signed_in(stack) as leaving:
        await leaving.post("/console/sign-out", {})
        assert CSRF.search(await staying.page("/console/forms"))


@pytest.mark.parametrize("token", ["", "short", "x" * 31])
def test_no_service_starts_with_an_admin_token_under_32_characters(
        settings: Settings, token: str) -> None:
    with pytest.raises(ConfigurationError, match="CASEWIRE_ADMIN_TOKEN"):
        create_app(settings.model_copy(update={"admin_token": token}))
