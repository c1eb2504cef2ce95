"""The seed's incoming-webhook examples, translated faithfully, and its Combining Options."""

from typing import Any

import aiohttp
import pytest

from tests.helpers import EventTap, FormFactory, wait_for_cases

SEED_BODY = {"text-field": "Simple input in a text-field with id textfield"}
JSON = {"Content-type": "application/json"}


async def test_seed_curl_post_creates_case_and_answers_empty_object(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with http.post(hook["url"], json=SEED_BODY, headers=JSON) as resp:
        assert resp.status == 200
        assert await resp.json() == {}
    [case] = await wait_for_cases(api, hook["form_id"], 1)
    assert case["data"] == SEED_BODY
    assert case["creator"] == "Addon - Incoming Webhook"
    assert case["status"] == "registered"
    assert case["case_number"] == 1


async def test_missing_mandatory_field_returns_field_required(
        make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with http.post(hook["url"], json={"email": "a@example.com"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"] == [{
            "field": "text-field", "code": "field_required",
            "message": "the field is mandatory and data is missing"}]


async def test_skipvalidate_accepts_missing_mandatory_field(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with http.post(f"{hook['url']}/skipvalidate", json={"email": "a@example.com"}) as resp:
        assert resp.status == 200
    [case] = await wait_for_cases(api, hook["form_id"], 1)
    assert case["data"] == {"email": "a@example.com"}


async def test_skipvalidate_still_checks_types(make_form: FormFactory,
                                               http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with http.post(f"{hook['url']}/skipvalidate", json={"due-date": "28/11/2026"}) as resp:
        assert resp.status == 400
        assert [e["code"] for e in (await resp.json())["errors"]] == ["wrong_date"]


async def test_skiptriggers_creates_case_whose_event_suppresses_automations(
        make_form: FormFactory, http: aiohttp.ClientSession, events: EventTap) -> None:
    hook = await make_form()
    async with http.post(f"{hook['url']}/skiptriggers", json=SEED_BODY) as resp:
        assert resp.status == 200
    event = await events.next(lambda e: e["type"] == "case.created"
                              and e["form_id"] == hook["form_id"])
    assert event["data"]["skip_triggers"] is True


async def test_plain_post_does_not_skip_triggers(
        make_form: FormFactory, http: aiohttp.ClientSession, events: EventTap) -> None:
    hook = await make_form()
    async with http.post(hook["url"], json=SEED_BODY) as resp:
        assert resp.status == 200
    event = await events.next(lambda e: e["type"] == "case.created"
                              and e["form_id"] == hook["form_id"])
    assert event["data"]["skip_triggers"] is False


@pytest.mark.parametrize("suffix", ["skiptriggers/skipvalidate", "skipvalidate/skiptriggers"])
async def test_combined_options_in_either_order_skip_both(
        suffix: str, make_form: FormFactory, http: aiohttp.ClientSession,
        events: EventTap) -> None:
    hook = await make_form()
    async with http.post(f"{hook['url']}/{suffix}", json={"email": "a@example.com"}) as resp:
        assert resp.status == 200
    event = await events.next(lambda e: e["type"] == "case.created"
                              and e["form_id"] == hook["form_id"])
    assert event["data"]["skip_triggers"] is True
    assert event["data"]["data"] == {"email": "a@example.com"}


@pytest.mark.parametrize("suffix", ["skipeverything", "skipvalidate/skipvalidate",
                                    "skipvalidate/extra"])
async def test_unknown_or_repeated_option_is_not_found(
        suffix: str, make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with http.post(f"{hook['url']}/{suffix}", json=SEED_BODY) as resp:
        assert resp.status == 404


async def test_unknown_token_is_not_found(stack: Any, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{stack.url('ingest')}/hooks/not-a-real-token", json=SEED_BODY) as resp:
        assert resp.status == 404
        assert (await resp.json())["errors"][0]["code"] == "not_found"


async def test_creator_sent_in_body_is_an_unknown_field_not_an_override(
        make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with http.post(hook["url"], json={**SEED_BODY, "creator": "Mallory"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"][0] == {
            "field": "creator", "code": "unknown_field",
            "message": "'creator' is case metadata that Casewire sets itself (a case from an "
                       "incoming webhook always has the creator 'Addon - Incoming Webhook'); "
                       "leave it out"}
