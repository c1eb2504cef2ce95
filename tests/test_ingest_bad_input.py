"""Bad input on ingest gets a clear error, never a 500: bytes no HTTP client library would send."""

import asyncio
from typing import Any

import orjson
import pytest

from tests.helpers import FormFactory, wait_for_cases
from tests.stack import Stack

BODY = b'{"text-field": "x"}'


async def raw_post(port: int, target: bytes, headers: bytes = b"",
                   body: bytes = BODY) -> tuple[int, Any]:
    """One POST written byte for byte; returns the status and the JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST " + target + b" HTTP/1.1\r\nHost: ingest\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\n" + headers
                     + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(payload)


@pytest.mark.parametrize("suffix", [b"", b"/skipvalidate"])
async def test_nul_in_the_token_is_not_found(suffix: bytes, stack: Stack,
                                             make_form: FormFactory) -> None:
    hook = await make_form()
    for token in (b"a%00b", hook["token"].encode() + b"%00", b"%00"):
        status, body = await raw_post(stack.port("ingest"), b"/hooks/" + token + suffix)
        assert (status, body["errors"][0]["code"]) == (404, "not_found")


@pytest.mark.parametrize("suffix", [b"/skipvalidate%00", b"/skip%00triggers",
                                    b"/skipvalidate/%00", b"/%00/skiptriggers"])
async def test_nul_in_the_options_is_not_found(suffix: bytes, stack: Stack,
                                               make_form: FormFactory) -> None:
    hook = await make_form()
    status, body = await raw_post(stack.port("ingest"),
                                  b"/hooks/" + hook["token"].encode() + suffix)
    assert (status, body["errors"][0]["code"]) == (404, "not_found")


# Control characters other than tab never get this far: aiohttp's parser answers 400 itself.
@pytest.mark.parametrize("key", [b"\xff\xfe", b"order-\xc3\x28", "ключ-1".encode(),
                                 b"tab\there", b"x" * 256])
async def test_an_idempotency_key_that_is_not_printable_ascii_is_invalid(
        key: bytes, stack: Stack, make_form: FormFactory) -> None:
    hook = await make_form()
    status, body = await raw_post(stack.port("ingest"), b"/hooks/" + hook["token"].encode(),
                                  b"Idempotency-Key: " + key + b"\r\n")
    assert (status, body["errors"][0]["code"]) == (400, "invalid_idempotency_key")
    assert "printable ASCII" in body["errors"][0]["message"]


async def test_a_printable_ascii_idempotency_key_with_spaces_is_accepted(
        stack: Stack, make_form: FormFactory) -> None:
    hook = await make_form()
    status, body = await raw_post(stack.port("ingest"), b"/hooks/" + hook["token"].encode(),
                                  b"Idempotency-Key: order 1001 / \"retry\" ~!\r\n")
    assert (status, body) == (200, {})


async def test_an_auth_key_that_is_not_utf8_is_access_deny(
        stack: Stack, make_form: FormFactory) -> None:
    hook = await make_form(authenticate_user=True)
    status, body = await raw_post(stack.port("ingest"), b"/hooks/" + hook["token"].encode(),
                                  b"Auth-key: \xff\xfe\r\n")
    assert (status, body["errors"][0]["code"]) == (400, "access_deny")


@pytest.mark.parametrize("amount", [b"123456789012345678901234567890", b"-9223372036854775809",
                                    b"1" * 5000])
async def test_an_integer_beyond_64_bits_is_refused_not_stored_rounded(
        amount: bytes, stack: Stack, make_form: FormFactory) -> None:
    hook = await make_form()
    status, body = await raw_post(stack.port("ingest"), b"/hooks/" + hook["token"].encode(),
                                  body=b'{"text-field": "x", "amount": ' + amount + b"}")
    assert status == 400
    assert body["errors"][0]["code"] in ("value_not_numeric", "invalid_json")


async def test_an_integer_within_64_bits_is_kept_exact(
        stack: Stack, make_form: FormFactory, api: Any) -> None:
    hook = await make_form()
    status, _ = await raw_post(stack.port("ingest"), b"/hooks/" + hook["token"].encode(),
                               body=b'{"text-field": "12345678901234567890", '
                                    b'"amount": 9223372036854775807}')
    assert status == 200
    [case] = await wait_for_cases(api, hook["form_id"], 1)
    assert case["data"]["amount"] == 9223372036854775807
