"""ingest's returnDataURL: answers checked against the form before the 200, honest 503s."""

import time
import uuid
from typing import Any

import aiohttp

from shared.settings import Settings
from shared.signing import UrlSigner, return_path
from tests.conftest import AutomationFactory, FormFactory, webhook_action
from tests.faults import proxied_ingest
from tests.test_ingest_outages import wait_ready

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
