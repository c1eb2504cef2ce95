"""Every error code of the seed and of the spec, provoked and asserted with its field."""

from typing import Any

import aiohttp
import pytest

from tests.helpers import FormFactory, wait_for_cases

VALID = {"text-field": "x"}


async def post_errors(http: aiohttp.ClientSession, url: str, body: Any) -> list[dict[str, Any]]:
    async with http.post(url, json=body) as resp:
        assert resp.status == 400, await resp.text()
        errors: list[dict[str, Any]] = (await resp.json())["errors"]
        return errors


@pytest.mark.parametrize(("body", "field", "code"), [
    ({}, "text-field", "field_required"),
    ({"text-field": ""}, "text-field", "value_missing"),
    ({"text-field": None}, "text-field", "value_missing"),
    ({**VALID, "due-date": "2026-02-30"}, "due-date", "wrong_date"),
    ({**VALID, "due-date": "28.11.2026"}, "due-date", "wrong_date"),
    ({**VALID, "seen-at": "yesterday"}, "seen-at", "wrong_date"),
    ({**VALID, "tags": "a"}, "tags", "value_not_array"),
    ({**VALID, "amount": "twelve"}, "amount", "value_not_numeric"),
    ({**VALID, "amount": True}, "amount", "value_not_numeric"),
    ({**VALID, "no-such-field": 1}, "no-such-field", "unknown_field"),
    ({**VALID, "notes": "later"}, "notes", "field_not_in_first_section"),
    ({**VALID, "priority": "medium"}, "priority", "value_not_allowed"),
    ({**VALID, "tags": ["a", "z"]}, "tags", "value_not_allowed"),
    ({"text-field": 42}, "text-field", "wrong_type"),
    ({**VALID, "email": "not-an-address"}, "email", "wrong_type"),
    ({**VALID, "urgent": "yes"}, "urgent", "wrong_type"),
    ({**VALID, "attachment": "file.pdf"}, "attachment", "wrong_type"),
])
async def test_bad_value_returns_its_code_for_its_field(
        body: dict[str, Any], field: str, code: str, make_form: FormFactory,
        http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    errors = await post_errors(http, hook["url"], body)
    assert [(e["field"], e["code"]) for e in errors] == [(field, code)]
    assert errors[0]["message"]


async def test_every_problem_gets_its_own_entry(make_form: FormFactory,
                                                http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    errors = await post_errors(http, hook["url"], {"amount": "x", "tags": 1, "bogus": 2})
    assert sorted((e["field"], e["code"]) for e in errors) == [
        ("amount", "value_not_numeric"), ("bogus", "unknown_field"),
        ("tags", "value_not_array"), ("text-field", "field_required")]


async def test_valid_values_of_every_type_are_accepted_and_stored_as_their_type(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    body = {"text-field": "x", "email": "a@example.com", "amount": "12.5", "due-date": "2026-11-28",
            "seen-at": "2026-11-28T10:00:00+01:00", "priority": "high", "tags": ["a", "c"],
            "urgent": False}
    async with http.post(hook["url"], json=body) as resp:
        assert resp.status == 200, await resp.text()
    [case] = await wait_for_cases(api, hook["form_id"], 1)
    assert case["data"] == {**body, "amount": 12.5}  # the numeric string is stored as a number


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe"])
async def test_body_that_is_not_json_returns_invalid_json(
        raw: bytes, make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with http.post(hook["url"], data=raw) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"][0]["code"] == "invalid_json"


@pytest.mark.parametrize("body", [[VALID], "text", 3, None])
async def test_json_that_is_not_an_object_returns_invalid_json(
        body: Any, make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    errors = await post_errors(http, hook["url"], body)
    assert errors[0]["code"] == "invalid_json"


async def test_body_over_the_limit_returns_413(make_form: FormFactory,
                                               http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    big = {"text-field": "x" * (1024 * 1024 + 1)}
    async with http.post(hook["url"], json=big) as resp:
        assert resp.status == 413
        assert (await resp.json())["errors"][0]["code"] == "body_too_large"


@pytest.mark.parametrize("key", ["creator", "case_number", "status"])
async def test_sending_case_metadata_says_casewire_sets_it(
        key: str, make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    [error] = await post_errors(http, hook["url"], {**VALID, key: "Someone"})
    assert (error["field"], error["code"]) == (key, "unknown_field")
    assert "Casewire sets itself" in error["message"]
    assert "Addon - Incoming Webhook" in error["message"]
    assert "has no field" not in error["message"]
