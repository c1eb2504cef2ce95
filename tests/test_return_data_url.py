"""ingest's returnDataURL: answers checked against the form before the 200, honest 503s."""

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

from shared.settings import Settings
from shared.signing import UrlSigner, return_path
from tests.faults import proxied_ingest
from tests.helpers import (
    AutomationFactory,
    FormFactory,
    case_when,
    dead_letters_mentioning,
    get_case,
    wait_ready,
    webhook_action,
)

FIELDS = [
    {"id": "text-field", "label": "Text", "type": "text", "mandatory": True},
    {"id": "amount", "label": "Amount", "type": "number"},
    {"id": "crm-status", "label": "CRM status", "type": "select", "options": ["open", "done"],
     "section": 1},
]
# Nothing fires it: the tests post to its returnDataURL themselves.
QUIET = [{"event": "status_changed", "to": ["closed"]}]


async def return_url_of_a_case(make_form: FormFactory, make_automation: AutomationFactory,
                               api: aiohttp.ClientSession, settings: Settings,
                               base_url: str | None = None) -> tuple[str, dict[str, Any]]:
    """A signed returnDataURL for an automation mapping `amount` and `status` of its answer."""
    hook = await make_form(fields=FIELDS)
    action = {**webhook_action("http://127.0.0.1:9/unused"),
              "response": [{"field": "amount", "key": "amount"},
                           {"field": "crm-status", "key": "status"}]}
    automation = await make_automation(hook["form_id"], "", when=QUIET, action=action)
    async with api.post(f"/api/forms/{hook['form_id']}/cases",
                        json={"data": {"text-field": "x"}}) as resp:
        assert resp.status == 201
        case: dict[str, Any] = await resp.json()
    path = return_path(automation["id"], case["id"], str(uuid.uuid4()), 0)
    signed = UrlSigner(settings.signing_key).sign("POST", path, 3600)
    return (base_url or settings.public_base_url) + signed, case


async def test_return_data_while_the_broker_is_known_down_answers_unavailable_at_once(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    async with proxied_ingest(settings, publish_timeout=5.0) as ingest:
        url, _ = await return_url_of_a_case(make_form, make_automation, api, settings,
                                            ingest.url(""))
        await ingest.broker.cut()
        await wait_ready(http, ingest, 503)
        started = time.monotonic()
        async with http.post(url, json={"status": "done"}) as resp:
            elapsed = time.monotonic() - started
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            assert (await resp.json())["errors"][0]["code"] == "unavailable"
    assert elapsed < 2.5


async def test_return_data_whose_confirm_never_comes_answers_outcome_unknown(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    async with proxied_ingest(settings, publish_timeout=1.0) as ingest:
        url, _ = await return_url_of_a_case(make_form, make_automation, api, settings,
                                            ingest.url(""))
        ingest.broker.freeze_replies()
        async with http.post(url, json={"status": "done"}) as resp:
            assert resp.status == 503
            assert (await resp.json())["errors"][0]["code"] == "outcome_unknown"


async def unchanged(api: aiohttp.ClientSession, settings: Settings,
                    case: dict[str, Any]) -> None:
    await asyncio.sleep(0.5)  # time enough for a write that should not happen
    found = await get_case(api, case["id"])
    assert (found["version"], found["data"]) == (1, case["data"])
    assert await dead_letters_mentioning(settings, case["id"].encode()) == 0


@pytest.mark.parametrize(("answer", "errors"), [
    ({"amount": "many"}, [("amount", "value_not_numeric")]),
    ({"amount": [1]}, [("amount", "value_not_numeric")]),
    ({"status": "maybe"}, [("status", "value_not_allowed")]),
    ({"status": 3}, [("status", "wrong_type")]),
    ({"amount": 7, "status": "maybe"}, [("status", "value_not_allowed")]),
    ({"amount": "x", "status": "maybe"}, [("amount", "value_not_numeric"),
                                          ("status", "value_not_allowed")]),
])
async def test_an_answer_that_does_not_fit_the_form_is_refused_and_nothing_is_written(
        answer: dict[str, Any], errors: list[tuple[str, str]], settings: Settings,
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        http: aiohttp.ClientSession) -> None:
    url, case = await return_url_of_a_case(make_form, make_automation, api, settings)
    async with http.post(url, json=answer) as resp:
        assert resp.status == 400
        found = (await resp.json())["errors"]
    assert [(e["field"], e["code"]) for e in found] == errors
    assert all("case field" in e["message"] for e in found)
    await unchanged(api, settings, case)


async def test_a_number_beyond_64_bits_is_refused_not_stored_rounded_nor_dead_lettered(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    url, case = await return_url_of_a_case(make_form, make_automation, api, settings)
    async with http.post(url, data=b'{"amount": 123456789012345678901234567890}') as resp:
        assert resp.status not in (200, 500)
        assert (resp.status, (await resp.json())["errors"][0]["code"]) == (
            400, "value_not_numeric")
    await unchanged(api, settings, case)


async def test_an_answer_that_fits_is_written(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    url, case = await return_url_of_a_case(make_form, make_automation, api, settings)
    async with http.post(url, json={"amount": "12", "status": "done"}) as resp:
        assert (resp.status, await resp.json()) == (200, {})
    found = await case_when(api, case["id"], lambda c: c["version"] == 2)
    assert found["data"] == {"text-field": "x", "amount": 12, "crm-status": "done"}


async def test_a_signed_url_whose_ids_are_not_uuids_is_not_found(
        settings: Settings, http: aiohttp.ClientSession) -> None:
    path = return_path("not-a-uuid", str(uuid.uuid4()), str(uuid.uuid4()), 0)
    url = settings.public_base_url + UrlSigner(settings.signing_key).sign("POST", path, 3600)
    async with http.post(url, json={"amount": 1}) as resp:
        assert (resp.status, (await resp.json())["errors"][0]["code"]) == (404, "not_found")
