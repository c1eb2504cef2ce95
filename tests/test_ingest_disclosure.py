"""What answers and logs give away: no server version, no webhook token in a log line."""

import secrets
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import aiohttp
import orjson
import pytest
import structlog
from aiohttp import web

from services.ingest.app import create_app
from shared.logging import mask_secrets, masked
from shared.settings import Settings
from tests.helpers import FormFactory
from tests.hostile import raw_request, request_head
from tests.processes import service_process
from tests.stack import Stack, free_port


@pytest.mark.parametrize(("service", "method", "path"), [
    ("ingest", "GET", "/healthz"), ("ingest", "POST", "/hooks/no-such-token"),
    ("ingest", "GET", "/no/such/route"), ("casestore", "GET", "/healthz"),
    ("casestore", "GET", "/api/forms"), ("dispatcher", "GET", "/readyz"),
    ("dispatcher", "POST", "/internal/no-such-route"),
])
async def test_no_service_names_its_server_software(
        service: str, method: str, path: str, stack: Stack,
        http: aiohttp.ClientSession) -> None:
    async with http.request(method, stack.url(service) + path) as resp:
        assert resp.headers["Server"] == "Casewire"
        assert "aiohttp" not in str(resp.headers).lower()


def test_a_masked_token_keeps_four_characters() -> None:
    assert masked("Xq3vLkP0aaaaaaaaaaaaaaaaaaaaaaaa") == "Xq3v…"
    assert mask_secrets("/hooks/Xq3vLkP0aaaa/skipvalidate") == "/hooks/Xq3v…/skipvalidate"
    assert mask_secrets("/hooks/Xq3vLkP0aaaa") == "/hooks/Xq3v…"
    assert mask_secrets("/readyz") == "/readyz"
    assert mask_secrets("b'POST /hooks/Xq3vLkP0aaaa?\\xff HTTP/1.1'") == \
        "b'POST /hooks/Xq3v…?\\xff HTTP/1.1'"
    assert mask_secrets("/files/f?expires=1&signature=ab12cd34") == \
        "/files/f?expires=1&signature=ab12…"


@pytest.fixture
async def ingest_with_a_failing_route(settings: Settings, stack: Stack) -> AsyncIterator[str]:
    """The real ingest app plus one route that fails the way a bug would, quoting its token."""

    async def fails(request: web.Request) -> NoReturn:
        raise RuntimeError(f"no such thing as {request.match_info['token']}")

    app = create_app(settings.model_copy(update={"ingest_port": free_port()}))
    app.router.add_get("/hooks/{token}", fails)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_an_unexpected_error_is_logged_with_the_token_masked(
        ingest_with_a_failing_route: str, http: aiohttp.ClientSession) -> None:
    token = secrets.token_urlsafe(24)
    with structlog.testing.capture_logs() as logs:
        async with http.get(f"{ingest_with_a_failing_route}/hooks/{token}") as resp:
            assert resp.status == 500
            assert (await resp.json())["errors"][0]["code"] == "internal_error"
    [failed] = [entry for entry in logs if entry["event"] == "request_failed"]
    assert failed["path"] == f"/hooks/{masked(token)}"
    assert f"no such thing as {masked(token)}" in failed["exception"]
    assert token not in repr(logs)


async def test_requests_to_known_unknown_and_malformed_tokens_log_no_token(
        stack: Stack, make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    tokens = [hook["token"], secrets.token_urlsafe(24)]
    with structlog.testing.capture_logs() as logs:
        for token in tokens:
            for suffix, body in (("", {"text-field": "x"}), ("/skipvalidate", {"amount": "x"}),
                                 ("/nonsense", {})):
                await post(http, f"{stack.url('ingest')}/hooks/{token}{suffix}", body)
        await post(http, f"{stack.url('ingest')}/hooks/{tokens[1]}%00", {})
    assert all(token not in repr(logs) for token in tokens)


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> None:
    async with http.post(url, json=body) as resp:
        assert resp.status in (200, 400, 404)


async def test_every_line_of_an_ingest_process_is_structured_and_masks_tokens(
        settings: Settings, stack: Stack, make_form: FormFactory) -> None:
    """aiohttp logs a request it cannot parse with its whole request line: a raw non-ASCII
    byte in the query of a webhook's URL once put the full token in a plain-text ERROR."""
    hook = await make_form()
    token = hook["token"].encode()
    own = settings.model_copy(update={"ingest_port": free_port(), "log_json": True,
                                      "log_level": "INFO"})
    async with service_process(own, "ingest") as ingest:
        for target in (b"/hooks/" + token + b"?\xff", b"/hooks/" + token + b"/\x01",
                       b"/hooks/" + token + b"?x=" + b"a" * 9000):
            answer = await raw_request(own.ingest_port, request_head("POST", target, []), b"{}")
            assert answer.status == 400
        answer = await raw_request(own.ingest_port, request_head(
            "POST", b"/hooks/" + token, [("Content-Type", b"application/json")]),
            b'{"text-field": "logged"}')
        assert answer.status == 200
    lines = [orjson.loads(line) for line in ingest.output]  # every line is JSON
    assert all(line["service"] == "ingest" for line in lines)
    assert hook["token"] not in repr(lines)
    from_aiohttp = [line for line in lines if line.get("logger", "").startswith("aiohttp")]
    assert len(from_aiohttp) >= 3
    assert all(f"/hooks/{masked(hook['token'])}" in repr(line) for line in from_aiohttp)
    assert any(line["event"] == "case_accepted" for line in lines)
