"""The outgoing HTTP engine against real aiohttp receivers on loopback: no broker, no database."""

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.dispatcher.request import OutgoingRequest, build_request, recorded
from services.dispatcher.sender import DeliveryOutcome, Sender, retry_after_seconds
from services.dispatcher.ssrf import AddressPolicy, GuardedResolver, TargetRefused
from shared.automations import RequestSettings
from shared.settings import Settings
from shared.signing import new_webhook_secret
from tests.receiver import Receiver, Reply
from tests.stack import free_port

LOOPBACK = ["127.0.0.0/8"]


def sender_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "admin_token": "x", "signing_key": "y", "outgoing_allow_networks": LOOPBACK,
        "retry_backoff_seconds": 0.05, "retry_backoff_max_seconds": 0.2, **overrides}
    return Settings(**values)


SenderFactory = Callable[..., Sender]


@pytest.fixture
async def make_sender() -> AsyncIterator[SenderFactory]:
    made: list[Sender] = []

    def factory(**overrides: Any) -> Sender:
        made.append(Sender(sender_settings(**overrides)))
        return made[-1]

    yield factory
    for sender in made:
        await sender.close()


@pytest.fixture
async def sender(make_sender: SenderFactory) -> Sender:
    return make_sender()


SECRET = new_webhook_secret()


async def send(sender: Sender, url: str, *, attempts: int = 1, per_try: float = 5.0,
               webhook_id: str = "msg_test", **settings: Any) -> DeliveryOutcome:
    request = build_request(RequestSettings(url=url, **settings), CONTENT)
    return await sender.deliver(request, secret=SECRET, webhook_id=webhook_id,
                                attempts=attempts, timeout=per_try)


async def send_raw(sender: Sender, url: str, attempts: int = 3) -> DeliveryOutcome:
    request = OutgoingRequest("POST", url, {"Content-Type": "application/json"}, b"{}")
    return await sender.deliver(request, secret=SECRET, webhook_id="msg_raw",
                                attempts=attempts, timeout=2.0)


# Seed: "HTTP method POST, GET, PUT" x "protocol JSON, JSON ARRAY, FORM"; GET sends query params.

CONTENT: dict[str, Any] = {"text": "a b&c", "n": 1, "f": 1.5, "yes": True, "no": False,
                           "none": None, "tags": ["a", "b"], "obj": {"k": "v"}, "uni": "ä"}
JSON_BODY = ('{"text":"a b&c","n":1,"f":1.5,"yes":true,"no":false,"none":null,'
             '"tags":["a","b"],"obj":{"k":"v"},"uni":"ä"}').encode()
FORM_BODY = ("text=a+b%26c&n=1&f=1.5&yes=true&no=false&none=&tags=a&tags=b"
             "&obj=%7B%22k%22%3A%22v%22%7D&uni=%C3%A4")


@pytest.mark.parametrize(("method", "protocol", "content_type", "body"), [
    ("POST", "json", "application/json", JSON_BODY),
    ("POST", "json_array", "application/json", b"[" + JSON_BODY + b"]"),
    ("POST", "form", "application/x-www-form-urlencoded", FORM_BODY.encode()),
    ("PUT", "json", "application/json", JSON_BODY),
    ("PUT", "json_array", "application/json", b"[" + JSON_BODY + b"]"),
    ("PUT", "form", "application/x-www-form-urlencoded", FORM_BODY.encode()),
    ("GET", "json", None, b""),
    ("GET", "json_array", None, b""),
    ("GET", "form", None, b""),
])
async def test_method_and_protocol_on_the_wire(
        method: str, protocol: str, content_type: str | None, body: bytes, receiver: Receiver,
        sender: Sender) -> None:
    url = receiver.endpoint()
    outcome = await send(sender, url, method=method, protocol=protocol)
    assert outcome.state == "succeeded"
    [seen] = receiver.at(url)
    assert (seen.method, seen.body, seen.headers.get("Content-Type")) == (method, body,
                                                                          content_type)
    assert seen.query_string == (FORM_BODY if method == "GET" else "")
    assert seen.headers["User-Agent"] == "Casewire-Webhooks/1.0"
    # Signed over exactly the bytes that arrived, whatever the encoding.
    Webhook(SECRET).verify(seen.body, seen.headers, json_parse=False)
    assert outcome.attempts[0].request.body == body.decode()


async def test_get_keeps_the_query_already_in_the_url(receiver: Receiver, sender: Sender) -> None:
    url = receiver.endpoint() + "?token=abc&x=%2F"
    await send(sender, url, method="GET", protocol="json")
    [seen] = receiver.at(url)
    assert seen.query_string == "token=abc&x=%2F&" + FORM_BODY


async def test_signature_verifies_with_standardwebhooks(receiver: Receiver, sender: Sender) -> None:
    url = receiver.endpoint()
    await send(sender, url, webhook_id="msg_verify")
    [seen] = receiver.at(url)
    assert Webhook(SECRET).verify(seen.body, seen.headers) == CONTENT
    assert seen.headers["webhook-id"] == "msg_verify"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(seen.body + b" ", seen.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(seen.body, seen.headers)


# Seed: "authentication none | basic"; the delivery log never holds the password.

async def test_basic_auth_is_sent_and_masked_in_the_log(receiver: Receiver, sender: Sender) -> None:
    url = receiver.endpoint()
    outcome = await send(sender, url, auth={"type": "basic", "username": "crm",
                                            "password": "s3cret"})
    [seen] = receiver.at(url)
    token = base64.b64encode(b"crm:s3cret").decode()
    assert seen.headers["Authorization"] == f"Basic {token}"
    logged = outcome.attempts[0].request
    assert logged.headers["Authorization"] == "Basic ***"
    assert "s3cret" not in logged.model_dump_json()
    assert token not in logged.model_dump_json()


async def test_credentials_in_the_url_become_a_masked_header(receiver: Receiver,
                                                             sender: Sender) -> None:
    url = receiver.endpoint().replace("http://", "http://crm:pa%40ss@")
    outcome = await send(sender, url)
    [seen] = receiver.at(url)
    assert seen.headers["Authorization"] == "Basic " + base64.b64encode(b"crm:pa@ss").decode()
    logged = outcome.attempts[0].request
    assert "pa%40ss" not in logged.url
    assert "crm" not in logged.url
    assert logged.headers["Authorization"] == "Basic ***"


def test_recorded_masks_a_bare_authorization_value() -> None:
    request = OutgoingRequest("POST", "http://x/", {"authorization": "rawtoken"}, b"\xff{}")
    logged = recorded(request)
    assert logged.headers == {"authorization": "***"}
    assert logged.body == "\ufffd{}"


# Seed: "attempts 1 | 2 | 3"; webhook-id stays the same so receivers can deduplicate.

@pytest.mark.parametrize(("attempts", "failures", "state"), [
    (1, 0, "succeeded"), (1, 1, "failed"), (2, 1, "succeeded"), (2, 2, "failed"),
    (3, 2, "succeeded"), (3, 3, "failed"), (3, 7, "failed"),
])
async def test_attempts_until_success_or_exhausted(
        attempts: int, failures: int, state: str, receiver: Receiver, sender: Sender) -> None:
    url = receiver.endpoint(*[Reply(status=503, body=b"busy")] * failures,
                         Reply(body=b'{"ok":true}'))
    outcome = await send(sender, url, attempts=attempts, webhook_id="msg_stable")
    expected = min(attempts, failures + 1)
    assert outcome.state == state
    assert [a.number for a in outcome.attempts] == list(range(1, expected + 1))
    seen = receiver.at(url)
    assert len(seen) == expected
    assert {s.headers["webhook-id"] for s in seen} == {"msg_stable"}
    for s in seen:
        Webhook(SECRET).verify(s.body, s.headers)
    assert len({a.id for a in outcome.attempts}) == expected
    statuses = [a.response_status for a in outcome.attempts]
    assert statuses == [503] * min(failures, expected) + [200] * (expected - failures)
    assert outcome.response_json == ({"ok": True} if state == "succeeded" else None)
    first = outcome.attempts[0]
    assert first.started_at.tzinfo is not None
    assert first.duration_ms > 0
    assert first.request.method == "POST"
    assert first.request.headers["webhook-id"] == "msg_stable"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried(status: int, receiver: Receiver,
                                              sender: Sender) -> None:
    url = receiver.endpoint(Reply(status=status), Reply())
    outcome = await send(sender, url, attempts=3)
    assert outcome.state == "succeeded"
    assert [a.response_status for a in outcome.attempts] == [status, 200]
    assert len(receiver.at(url)) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422, 301, 302, 304])
async def test_other_4xx_and_3xx_are_final(status: int, receiver: Receiver, sender: Sender) -> None:
    url = receiver.endpoint(Reply(status=status, body=b'{"error":"no"}'), Reply())
    outcome = await send(sender, url, attempts=3)
    assert outcome.state == "failed"
    assert [a.response_status for a in outcome.attempts] == [status]
    assert outcome.response_json is None
    assert len(receiver.at(url)) == 1


async def test_redirects_are_not_followed(receiver: Receiver, sender: Sender) -> None:
    elsewhere = receiver.endpoint()
    url = receiver.endpoint(Reply(status=302, headers={"Location": elsewhere}))
    outcome = await send(sender, url, attempts=3)
    assert outcome.state == "failed"
    [attempt] = outcome.attempts
    assert (attempt.response_status, attempt.response_headers["Location"]) == (302, elsewhere)
    assert receiver.at(elsewhere) == []


# Retry-After: honoured on 429 and 503, within retry_after_cap_seconds.

async def test_retry_after_seconds_are_honoured(receiver: Receiver, sender: Sender) -> None:
    url = receiver.endpoint(Reply(status=429, headers={"Retry-After": "1"}), Reply())
    outcome = await send(sender, url, attempts=2)
    assert outcome.state == "succeeded"
    first, second = receiver.at(url)
    # The backoff alone would wait at most 0.2 s.
    assert second.arrived_at - first.arrived_at >= 0.95


async def test_retry_after_http_date_is_honoured(receiver: Receiver, sender: Sender) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    url = receiver.endpoint(Reply(status=503, headers={"Retry-After": format_datetime(when, True)}),
                         Reply())
    outcome = await send(sender, url, attempts=2)
    assert outcome.state == "succeeded"
    first, second = receiver.at(url)
    assert second.arrived_at - first.arrived_at >= 0.9


async def test_retry_after_is_capped(receiver: Receiver, make_sender: SenderFactory) -> None:
    sender = make_sender(retry_after_cap_seconds=0.5)
    url = receiver.endpoint(Reply(status=429, headers={"Retry-After": "3600"}), Reply())
    # Guards the test run: without the cap this would wait an hour.
    outcome = await asyncio.wait_for(send(sender, url, attempts=2), 30)
    assert outcome.state == "succeeded"
    first, second = receiver.at(url)
    # The capped header, not the <= 0.2 s backoff.
    assert second.arrived_at - first.arrived_at >= 0.45


async def test_retry_after_on_other_statuses_is_ignored(receiver: Receiver, sender: Sender) -> None:
    url = receiver.endpoint(Reply(status=500, headers={"Retry-After": "3600"}), Reply())
    outcome = await asyncio.wait_for(send(sender, url, attempts=2), 30)
    assert outcome.state == "succeeded"


def test_retry_after_parsing() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(" 0 ", now) == 0.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), True), now) == 90.0
    assert retry_after_seconds(format_datetime(now - timedelta(days=1), True), now) == 0.0
    assert retry_after_seconds("9" * 400, now) == float("inf")
    for unusable in (None, "", "-5", "soon", "1.5"):
        assert retry_after_seconds(unusable, now) is None


# Failures without an answer: timeouts and refused connections are retried and logged.

async def test_timeout_is_recorded_and_retried(receiver: Receiver, sender: Sender) -> None:
    url = receiver.endpoint(Reply(hang=True))
    outcome = await send(sender, url, attempts=2, per_try=0.5)
    assert outcome.state == "failed"
    assert [(a.response_status, a.error) for a in outcome.attempts] == \
        [(None, "timeout after 0.5s")] * 2
    assert len(receiver.at(url)) == 2


async def test_connection_refused_is_recorded_and_retried(sender: Sender) -> None:
    port = free_port()  # nothing listens there
    outcome = await send(sender, f"http://127.0.0.1:{port}/hook", attempts=3)
    assert outcome.state == "failed"
    assert len(outcome.attempts) == 3
    for attempt in outcome.attempts:
        assert attempt.response_status is None
        assert attempt.error == f"connection refused by 127.0.0.1:{port}"


async def test_a_hanging_receiver_does_not_block_others(receiver: Receiver, sender: Sender) -> None:
    stuck = receiver.endpoint(Reply(hang=True))
    hanging = asyncio.create_task(send(sender, stuck, per_try=10))
    # The hanging request is in flight, holding its connection.
    await receiver.wait_for(stuck, 1, within=5)
    fast = await asyncio.wait_for(send(sender, receiver.endpoint()), 8)
    assert fast.state == "succeeded"
    assert not hanging.done()
    hanging.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await hanging


async def test_connections_are_reused(receiver: Receiver, sender: Sender) -> None:
    first, second = receiver.endpoint(), receiver.endpoint()
    await send(sender, first)
    await send(sender, second)
    assert receiver.at(first)[0].peer_port == receiver.at(second)[0].peer_port


async def test_zero_attempts_is_a_programming_error(sender: Sender) -> None:
    with pytest.raises(ValueError, match="attempts"):
        await send(sender, "http://127.0.0.1:1/", attempts=0)


# Response data: the whole JSON is parsed, the log keeps only an excerpt.

async def test_excerpt_is_truncated_but_json_is_parsed_whole(
        receiver: Receiver, make_sender: SenderFactory) -> None:
    answer = {"id": "x" * 100, "nested": {"status": "open"}}
    url = receiver.endpoint(Reply(body=orjson.dumps(answer), headers={"X-Trace": "t1"}))
    outcome = await send(make_sender(response_excerpt_bytes=16), url)
    assert outcome.response_json == answer
    [attempt] = outcome.attempts
    assert attempt.response_body == orjson.dumps(answer)[:16].decode()
    assert attempt.response_headers["X-Trace"] == "t1"


@pytest.mark.parametrize("body", [b"thanks", b"", b"{broken"])
async def test_non_json_success_has_no_response_json(body: bytes, receiver: Receiver,
                                                     sender: Sender) -> None:
    outcome = await send(sender, receiver.endpoint(Reply(body=body)))
    assert outcome.state == "succeeded"
    assert outcome.response_json is None
    assert outcome.attempts[0].response_body == body.decode()


# SSRF: nothing internal is reachable unless allowed, and not even a connection is opened.

@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A bare TCP port on 127.0.0.1 and ::1 that counts every connection made to it."""
    accepted: list[int] = []

    async def count(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    port = free_port()
    server = await asyncio.start_server(count, host=["127.0.0.1", "::1"], port=port)
    async with server:
        yield port, accepted


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]",
                                  "[::ffff:7f00:1]", "127.0.0.1."])
async def test_loopback_is_refused_without_a_connection(
        host: str, listener: tuple[int, list[int]], make_sender: SenderFactory) -> None:
    port, accepted = listener
    outcome = await send_raw(make_sender(outgoing_allow_networks=[]), f"http://{host}:{port}/")
    assert outcome.state == "failed"
    [attempt] = outcome.attempts
    assert attempt.error is not None
    assert attempt.error.startswith("target refused:")
    assert "loopback" in attempt.error
    assert attempt.response_status is None
    assert accepted == []


# Forms a resolver may read as loopback; aiohttp or the guard must stop each before connecting.
@pytest.mark.parametrize("host", ["0x7f.0.0.1", "2130706433", "127.1", "0177.0.0.1"])
async def test_obfuscated_loopback_never_connects(
        host: str, listener: tuple[int, list[int]], make_sender: SenderFactory) -> None:
    port, accepted = listener
    outcome = await send_raw(make_sender(outgoing_allow_networks=[]), f"http://{host}:{port}/")
    assert outcome.state == "failed"
    [attempt] = outcome.attempts
    assert attempt.error is not None
    assert attempt.error.startswith(("target refused:", "invalid URL:"))
    assert accepted == []


@pytest.mark.parametrize(("host", "reason"), [
    ("10.0.0.1", "private"), ("192.168.1.1", "private"), ("172.16.0.1", "private"),
    ("169.254.169.254", "link-local"), ("100.64.0.1", "CGNAT"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("[fd00::1]", "private"), ("[fe80::1]", "link-local"),
    ("[::ffff:169.254.169.254]", "link-local"), ("[64:ff9b::a00:1]", "private"),
])
async def test_internal_targets_are_refused(host: str, reason: str,
                                            make_sender: SenderFactory) -> None:
    outcome = await send_raw(make_sender(outgoing_allow_networks=[]), f"http://{host}/x")
    assert outcome.state == "failed"
    [attempt] = outcome.attempts
    assert attempt.error is not None
    assert attempt.error.startswith("target refused:")
    assert reason in attempt.error
    assert f"target refused: {host.strip('[]')} is" in attempt.error


async def test_allowed_networks_open_loopback(receiver: Receiver,
                                              make_sender: SenderFactory) -> None:
    url = receiver.endpoint()
    refused = await send_raw(make_sender(outgoing_allow_networks=[]), url)
    assert refused.state == "failed"
    assert receiver.at(url) == []
    allowed = await send_raw(make_sender(outgoing_allow_networks=LOOPBACK), url)
    assert allowed.state == "succeeded"
    assert len(receiver.at(url)) == 1
    # A host name goes through the guarded resolver rather than the literal check.
    by_name = url.replace("127.0.0.1", "localhost")
    named = await send_raw(make_sender(outgoing_allow_networks=[*LOOPBACK, "::1/128"]), by_name)
    assert named.state == "succeeded"


@pytest.mark.parametrize(("address", "allowed"), [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("::ffff:8.8.8.8", True),
    ("2002:808:808::", True), ("127.0.0.1", False), ("255.255.255.255", False),
    ("240.0.0.1", False), ("198.18.0.1", False), ("2002:7f00:1::", False), ("::", False),
    ("ff02::1", False), ("fe80::1%1", False), ("192.0.2.1", False),
])
def test_address_policy(address: str, allowed: bool) -> None:
    policy = AddressPolicy([])
    if allowed:
        policy.check("example.org", address)
    else:
        with pytest.raises(TargetRefused, match=r"target refused: example\.org"):
            policy.check("example.org", address)


def test_socket_factory_checks_the_address_being_connected() -> None:
    policy = AddressPolicy([])
    with pytest.raises(TargetRefused, match="loopback"):
        policy.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    sock = policy.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", 80)))
    sock.close()
    assert sock.family == socket.AF_INET


def test_allowed_network_also_covers_mapped_ipv6() -> None:
    policy = AddressPolicy(["127.0.0.0/8"])
    policy.check("h", "::ffff:127.0.0.1")
    with pytest.raises(TargetRefused):
        policy.check("h", "10.0.0.1")


class StaticResolver(AbstractResolver):
    """A DNS answer chosen by the test, like a rebinding or split-horizon name would give."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET,
                              proto=0, flags=0) for a in self.addresses]

    async def close(self) -> None:
        pass


async def test_resolver_refuses_if_any_address_is_internal() -> None:
    public = GuardedResolver(AddressPolicy([]), StaticResolver(["93.184.215.14"]))
    assert [r["host"] for r in await public.resolve("example.org", 443)] == ["93.184.215.14"]
    mixed = GuardedResolver(AddressPolicy([]),
                            StaticResolver(["93.184.215.14", "169.254.169.254"]))
    with pytest.raises(TargetRefused, match=r"metadata\.test \(169\.254\.169\.254\)"):
        await mixed.resolve("metadata.test", 80)
