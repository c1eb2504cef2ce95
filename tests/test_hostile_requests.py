"""The hostile requests that answered 500 (issue 24), each with the 4xx and code it gets now,
and bodies built to amplify: their errors are capped and they hold up no other request."""

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from shared.signing import return_url
from tests.helpers import FormFactory, create_automation, new_case, new_form, upload
from tests.hostile import DEEP_JSON, HUGE_DIGITS, NOT_UTF8, raw_request, request_head
from tests.stack import Stack


def errors_of(body: bytes) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = orjson.loads(body)["errors"]
    return found


async def post(port: int, path: str, body: bytes, *headers: tuple[str, bytes]) -> tuple[
        int, list[dict[str, Any]]]:
    head = request_head("POST", path.encode(),
                        [("Content-Type", b"application/json"), *headers])
    answer = await raw_request(port, head, body)
    return answer.status, errors_of(answer.body)


async def test_json_nested_past_the_recursion_limit_is_invalid_json_everywhere(
        stack: Stack, make_form: FormFactory, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    auth = ("Authorization", f"Bearer {stack.settings.admin_token}".encode())
    automation = (await create_automation(api, hook["form_id"]))["id"]
    case = await new_case(api, hook["form_id"])
    returns = urlsplit(return_url(stack.settings, automation, case["id"], case["id"], 0))
    for port, path, headers in [
            (stack.port("ingest"), urlsplit(hook["url"]).path, ()),
            (stack.port("casestore"), "/api/forms", (auth,)),
            (stack.port("ingest"), f"{returns.path}?{returns.query}", ())]:
        status, errors = await post(port, path, DEEP_JSON, *headers)
        assert (status, errors[0]["code"]) == (400, "invalid_json"), path
        assert "nested deeper than 64 levels" in errors[0]["message"]


@pytest.mark.parametrize("path", ["/api/deliveries", "/api/forms/{form}/cases",
                                  "/api/automations/{automation}/timers"])
async def test_a_limit_of_5000_digits_is_a_400_naming_it(
        path: str, api: aiohttp.ClientSession) -> None:
    form = await new_form(api)
    automation = (await create_automation(api, form))["id"]
    target = path.format(form=form, automation=automation)
    for value in (HUGE_DIGITS, "²"):
        async with api.get(target, params={"limit": value}) as resp:
            assert resp.status == 400
            assert [(e["field"], e["code"]) for e in (await resp.json())["errors"]] == [
                ("limit", "invalid")]


async def test_signed_urls_with_5000_digit_expiry_or_a_non_ascii_signature_are_refused(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    form = await new_form(api)
    case = await new_case(api, form)
    file_url = urlsplit((await upload(api, case["id"]))["url"])
    signature = dict(p.split("=") for p in file_url.query.split("&"))["signature"]
    for query in (f"expires={HUGE_DIGITS}&signature={signature}",
                  "expires=9999999999&signature=%C2%B2%FF"):
        answer = await raw_request(stack.port("casestore"), request_head(
            "GET", f"{file_url.path}?{query}".encode(), []))
        assert (answer.status, errors_of(answer.body)[0]["code"]) == (403, "forbidden")
        returns = urlsplit(return_url(stack.settings, case["id"], case["id"], case["id"], 0))
        status, errors = await post(stack.port("ingest"), f"{returns.path}?{query}", b"{}")
        assert (status, errors[0]["code"]) == (403, "access_deny")


@pytest.mark.parametrize(("service", "path"), [("casestore", "/api/forms"),
                                               ("dispatcher", "/internal/automations/x/test")])
async def test_an_authorization_header_that_is_not_utf8_is_a_401(
        service: str, path: str, stack: Stack) -> None:
    for value in (b"Bearer " + NOT_UTF8, NOT_UTF8):
        status, errors = await post(stack.port(service), path, b"{}", ("Authorization", value))
        assert (status, errors[0]["code"]) == (401, "unauthorized")


async def test_a_console_cookie_or_csrf_token_that_is_not_utf8_is_no_session(
        stack: Stack) -> None:
    port = stack.port("casestore")
    for cookie in (b"casewire_console=" + NOT_UTF8 + b".a.b",
                   b"casewire_console=" + HUGE_DIGITS.encode() + b".a.b"):
        answer = await raw_request(port, request_head("GET", b"/console/forms",
                                                      [("Cookie", cookie)]))
        assert answer.status == 303
        assert answer.headers["location"].startswith("/console/sign-in")
    answer = await raw_request(port, request_head("POST", b"/console/sign-out", [
        ("Cookie", b"casewire_console=" + NOT_UTF8), ("X-CSRF-Token", NOT_UTF8)]))
    assert answer.status == 403


@pytest.mark.parametrize(("content_type", "body"), [
    (b"application/x-www-form-urlencoded", b"token=\xff\xfe&next=%2Fconsole%2F"),
    (b"multipart/form-data; boundary=b",
     b"--b\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\n\xff\xfe\r\n--b--\r\n")])
async def test_a_sign_in_form_that_is_not_utf8_is_invalid_form(
        content_type: bytes, body: bytes, stack: Stack) -> None:
    answer = await raw_request(stack.port("casestore"), request_head(
        "POST", b"/console/sign-in", [("Content-Type", content_type)]), body)
    assert answer.status == 400
    assert b"<code>invalid_form</code>" in answer.body  # the console answers with a page


def unknown_fields_body(limit: int) -> bytes:
    """As many unknown field names as fit in `limit` bytes (95,000 in 1 MiB)."""
    body = {f"f{n}": 0 for n in range(limit // 11)}
    while len(raw := orjson.dumps(body)) > limit:
        body.popitem()
    return raw


async def test_a_body_of_95000_unknown_fields_gets_100_errors_and_a_count(
        stack: Stack, make_form: FormFactory) -> None:
    hook = await make_form()
    body = unknown_fields_body(stack.settings.max_body_bytes)
    keys = len(orjson.loads(body))
    assert keys > 90_000
    status, errors = await post(stack.port("ingest"), urlsplit(hook["url"]).path, body)
    assert status == 400
    assert [e["code"] for e in errors] == ["unknown_field"] * 100 + ["too_many_errors"]
    assert errors[-1]["message"] == ("only the first 100 problems are listed; "
                                     f"{keys - 100} more keys were not checked")


async def test_a_request_beside_three_amplifying_bodies_answers_within_a_second(
        stack: Stack, make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    """Each such body once held ingest's event loop for 1.7 s: three at once delayed a normal
    request by 5.1 s."""
    hook = await make_form()
    body = unknown_fields_body(stack.settings.max_body_bytes)
    path = urlsplit(hook["url"]).path

    answered = asyncio.Event()

    async def flood() -> None:
        while True:
            await post(stack.port("ingest"), path, body)
            answered.set()

    flooding = [asyncio.create_task(flood()) for _ in range(3)]
    try:
        await asyncio.wait_for(answered.wait(), 60)  # the three are going round now
        until = time.monotonic() + 3
        while time.monotonic() < until:
            started = time.monotonic()
            async with http.post(hook["url"], json={"text-field": "beside"}) as resp:
                assert resp.status == 200
            assert time.monotonic() - started < 1.0
    finally:
        for task in flooding:
            task.cancel()
        await asyncio.gather(*flooding, return_exceptions=True)
