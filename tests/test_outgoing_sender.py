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
from services.dispatcher.sender import Sender, Sent, retry_after_seconds
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


async def send(sender: Sender, url: str, *, per_try: float = 5.0, number: int = 1,
               webhook_id: str = "msg_test", secrets: tuple[str, ...] = (SECRET,),
               **settings: Any) -> Sent:
    request = build_request(RequestSettings(url=url, **settings), CONTENT)
    return await sender.send(request, secrets=secrets, webhook_id=webhook_id, number=number,
                             timeout=per_try)


async def send_raw(sender: Sender, url: str) -> Sent:
    request = OutgoingRequest("POST", url, {"Content-Type": "application/json"}, b"{}")
    return await sender.send(request, secrets=[SECRET], webhook_id="msg_raw", number=1,
                             timeout=2.0)


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
    sent = await send(sender, url, method=method, protocol=protocol)
    assert sent.verdict == "succeeded"
    [seen] = receiver.at(url)
    assert (seen.method, seen.body, seen.headers.get("Content-Type")) == (method, body,
                                                                          content_type)
    assert seen.query_string == (FORM_BODY if method == "GET" else "")
    assert seen.headers["User-Agent"] == "Casewire-Webhooks/1.0"
    # Signed over exactly the bytes that arrived, whatever the encoding; for GET, which carries
    # the content in its URL, over the raw query string.
    signed = seen.query_string.encode() if method == "GET" else seen.body
    Webhook(SECRET).verify(signed, seen.headers, json_parse=False)
    assert sent.attempt.request.body == body.decode()


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
    sent = await send(sender, url, auth={"type": "basic", "username": "crm",
                                         "password": "s3cret"})
    [seen] = receiver.at(url)
    token = base64.b64encode(b"crm:s3cret").decode()
    assert seen.headers["Authorization"] == f"Basic {token}"
    logged = sent.attempt.request
    assert logged.headers["Authorization"] == "Basic ***"
    assert "s3cret" not in logged.model_dump_json()
    assert token not in logged.model_dump_json()


async def test_credentials_in_the_url_become_a_masked_header(receiver: Receiver,
                                                             sender: Sender) -> None:
    url = receiver.endpoint().replace("http://", "http://crm:pa%40ss@")
    sent = await send(sender, url)
    [seen] = receiver.at(url)
    assert seen.headers["Authorization"] == "Basic " + base64.b64encode(b"crm:pa@ss").decode()
    logged = sent.attempt.request
    assert "pa%40ss" not in logged.url
    assert "crm" not in logged.url
    assert logged.headers["Authorization"] == "Basic ***"


def test_recorded_masks_a_bare_authorization_value() -> None:
    request = OutgoingRequest("POST", "http://x/", {"authorization": "rawtoken"}, b"\xff{}")
    logged = recorded(request)
    assert logged.headers == {"authorization": "***"}
    assert logged.body == "\ufffd{}"


# What an answer means for the delivery (casestore schedules what comes next): the seed's
# retried statuses, final ones, and 410 Gone, which disables the automation.

@pytest.mark.parametrize(("status", "verdict"), [
    (200, "succeeded"), (201, "succeeded"), (204, "succeeded"),
    (408, "retry"), (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"),
    (504, "retry"), (400, "final"), (401, "final"), (403, "final"), (404, "final"),
    (422, "final"), (301, "final"), (302, "final"), (304, "final"), (410, "gone"),
])
async def test_each_answer_gets_its_verdict(status: int, verdict: str, receiver: Receiver,
                                            sender: Sender) -> None:
    url = receiver.endpoint(Reply(status=status, body=b'{"ok":true}'))
    sent = await send(sender, url, number=2, webhook_id="msg_stable")
    assert sent.verdict == verdict
    assert sent.response_json == ({"ok": True} if verdict == "succeeded" and status != 204
                                  else None)  # a 204 has no body
    [seen] = receiver.at(url)
    assert seen.headers["webhook-id"] == "msg_stable"
    Webhook(SECRET).verify(seen.body, seen.headers)
    attempt = sent.attempt
    assert (attempt.number, attempt.response_status) == (2, status)
    assert attempt.started_at.tzinfo is not None
    assert attempt.duration_ms > 0
    assert attempt.request.headers["webhook-id"] == "msg_stable"


async def test_two_secrets_sign_twice_and_either_verifies(receiver: Receiver,
                                                          sender: Sender) -> None:
    """Standard Webhooks' rotation: space-separated signatures while an old secret overlaps."""
    old = new_webhook_secret()
    url = receiver.endpoint()
    await send(sender, url, secrets=(SECRET, old))
    [seen] = receiver.at(url)
    assert len(seen.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(SECRET).verify(seen.body, seen.headers) == CONTENT
    assert Webhook(old).verify(seen.body, seen.headers) == CONTENT
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(seen.body, seen.headers)


async def test_redirects_are_not_followed(receiver: Receiver, sender: Sender) -> None:
    elsewhere = receiver.endpoint()
    url = receiver.endpoint(Reply(status=302, headers={"Location": elsewhere}))
    sent = await send(sender, url)
    assert sent.verdict == "final"
    assert (sent.attempt.response_status, sent.attempt.response_headers["Location"]) == \
        (302, elsewhere)
    assert receiver.at(elsewhere) == []


# Retry-After: honoured on 429 and 503, within retry_after_cap_seconds.

@pytest.mark.parametrize(("status", "header", "expected"), [
    (429, "7", 7.0), (503, "2", 2.0), (429, "3600", 60.0), (500, "3600", None),
    (429, "soon", None)])
async def test_retry_after_is_read_capped_and_only_where_it_means_something(
        status: int, header: str, expected: float | None, receiver: Receiver,
        sender: Sender) -> None:
    url = receiver.endpoint(Reply(status=status, headers={"Retry-After": header}))
    sent = await send(sender, url)
    assert (sent.verdict, sent.retry_after) == ("retry", expected)


async def test_retry_after_http_date_is_read(receiver: Receiver, sender: Sender) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    url = receiver.endpoint(Reply(status=503,
                                  headers={"Retry-After": format_datetime(when, True)}))
    sent = await send(sender, url)
    assert sent.retry_after is not None
    assert 25 <= sent.retry_after <= 30


def test_retry_after_parsing() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(" 0 ", now) == 0.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), True), now) == 90.0
    assert retry_after_seconds(format_datetime(now - timedelta(days=1), True), now) == 0.0
    assert retry_after_seconds("9" * 400, now) == float("inf")
    for unusable in (None, "", "-5", "soon", "1.5"):
        assert retry_after_seconds(unusable, now) is None


# Failures without an answer: timeouts and refused connections are worth another try.

async def test_timeout_is_recorded_and_worth_a_retry(receiver: Receiver, sender: Sender) -> None:
    url = receiver.endpoint(Reply(hang=True))
    sent = await send(sender, url, per_try=0.5)
    assert sent.verdict == "retry"
    assert (sent.attempt.response_status, sent.attempt.error) == (None, "timeout after 0.5s")


async def test_connection_refused_is_recorded_and_worth_a_retry(sender: Sender) -> None:
    port = free_port()  # nothing listens there
    sent = await send(sender, f"http://127.0.0.1:{port}/hook")
    assert sent.verdict == "retry"
    assert sent.attempt.response_status is None
    assert sent.attempt.error == f"connection refused by 127.0.0.1:{port}"


async def test_a_hanging_receiver_does_not_block_others(receiver: Receiver, sender: Sender) -> None:
    stuck = receiver.endpoint(Reply(hang=True))
    hanging = asyncio.create_task(send(sender, stuck, per_try=10))
    # The hanging request is in flight, holding its connection.
    await receiver.wait_for(stuck, 1, within=5)
    fast = await asyncio.wait_for(send(sender, receiver.endpoint()), 8)
    assert fast.verdict == "succeeded"
    assert not hanging.done()
    hanging.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await hanging


async def test_connections_are_reused(receiver: Receiver, sender: Sender) -> None:
    first, second = receiver.endpoint(), receiver.endpoint()
    await send(sender, first)
    await send(sender, second)
    assert receiver.at(first)[0].peer_port == receiver.at(second)[0].peer_port


# Response data: the whole JSON is parsed, the log keeps only an excerpt.

async def test_excerpt_is_truncated_but_json_is_parsed_whole(
        receiver: Receiver, make_sender: SenderFactory) -> None:
    answer = {"id": "x" * 100, "nested": {"status": "open"}}
    url = receiver.endpoint(Reply(body=orjson.dumps(answer), headers={"X-Trace": "t1"}))
    sent = await send(make_sender(response_excerpt_bytes=16), url)
    assert sent.response_json == answer
    attempt = sent.attempt
    assert attempt.response_body == orjson.dumps(answer)[:16].decode()
    assert attempt.response_headers["X-Trace"] == "t1"


@pytest.mark.parametrize("body", [b"thanks", b"", b"{broken"])
async def test_non_json_success_has_no_response_json(body: bytes, receiver: Receiver,
                                                     sender: Sender) -> None:
    sent = await send(sender, receiver.endpoint(Reply(body=body)))
    assert sent.verdict == "succeeded"
    assert sent.response_json is None
    assert sent.attempt.response_body == body.decode()


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
    sent = await send_raw(make_sender(outgoing_allow_networks=[]), f"http://{host}:{port}/")
    assert sent.verdict == "final"
    attempt = sent.attempt
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
    sent = await send_raw(make_sender(outgoing_allow_networks=[]), f"http://{host}:{port}/")
    assert sent.verdict == "final"
    attempt = sent.attempt
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
    sent = await send_raw(make_sender(outgoing_allow_networks=[]), f"http://{host}/x")
    assert sent.verdict == "final"
    attempt = sent.attempt
    assert attempt.error is not None
    assert attempt.error.startswith("target refused:")
    assert reason in attempt.error
    assert f"target refused: {host.strip('[]')} is" in attempt.error


async def test_allowed_networks_open_loopback(receiver: Receiver,
                                              make_sender: SenderFactory) -> None:
    url = receiver.endpoint()
    refused = await send_raw(make_sender(outgoing_allow_networks=[]), url)
    assert refused.verdict == "final"
    assert receiver.at(url) == []
    allowed = await send_raw(make_sender(outgoing_allow_networks=LOOPBACK), url)
    assert allowed.verdict == "succeeded"
    assert len(receiver.at(url)) == 1
    # A host name goes through the guarded resolver rather than the literal check.
    by_name = url.replace("127.0.0.1", "localhost")
    named = await send_raw(make_sender(outgoing_allow_networks=[*LOOPBACK, "::1/128"]), by_name)
    assert named.verdict == "succeeded"


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
