"""The console's automation, delivery, health and case pages, without a browser."""

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from services.casestore.console.triggers import KINDS
from tests.console_helpers import automation_fields, signed_in
from tests.helpers import AutomationFactory, FormFactory, call, new_case, until
from tests.receiver import Receiver, Reply
from tests.stack import Stack

pytestmark = pytest.mark.timeout(60)
KINDS_ORDER = [k.event for k in KINDS]


async def _form_with_hook(make_form: FormFactory) -> str:
    hook = await make_form()
    return str(hook["form_id"])


async def test_automation_errors_are_shown_next_to_their_part(
        stack: Stack, make_form: FormFactory) -> None:
    form_id = await _form_with_hook(make_form)
    async with signed_in(stack) as console:
        body, _ = await console.post(f"/console/forms/{form_id}/automations/new", [
            *automation_fields("Bad", "http://127.0.0.1/hook"), ("if", "{not json")],
            status=400)
        assert 'id="err-if"' in body
        assert "not valid JSON" in body
        body, _ = await console.post(f"/console/forms/{form_id}/automations/new", [
            *automation_fields("Bad", "http://127.0.0.1/hook", when=("field_changed",))],
            status=400)
        assert f'id="err-when-{KINDS_ORDER.index("field_changed")}"' in body  # needs fields
        body, _ = await console.post(f"/console/forms/{form_id}/automations/new", [
            *automation_fields("Bad", "http://10.1.2.3/hook",
                               content=(("n", "meta", "no_such_meta"),
                                        ("t", "field", "text-field"))),
            ("if", '{"all": [{"field": "nope", "op": "eq", "value": 1}]}')], status=400)
    assert 'id="err-if"' in body
    assert "&#39;nope&#39;" in body
    assert 'id="err-content-0"' in body
    assert "no_such_meta" in body
    assert 'id="err-content-1"' not in body
    assert 'id="err-settings-url"' in body


async def test_automation_is_created_and_edited_like_the_api_does(
        stack: Stack, make_form: FormFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    form_id = await _form_with_hook(make_form)
    url = receiver.endpoint()
    async with signed_in(stack) as console:
        _, location = await console.post(f"/console/forms/{form_id}/automations/new", [
            *automation_fields("To CRM", url, when=("case_created", "status_changed"),
                               content=(("n", "meta", "case_number"), ("v", "value", "42"),
                                        ("s", "template", "#{case_number}")),
                               auth="basic", username="crm", password="s3cret",
                               response=(("email", "a.b"),),
                               retry="extended", max_per_second="5", max_in_flight="7"),
            ("if", '{"any": [{"field": "priority", "op": "eq", "value": "high"},'
                   ' {"all": [{"field": "amount", "op": "gt", "value": 3}]}]}')])
        automation = location.split("/")[-1].split("?")[0]
        async with api.get(f"/api/automations/{automation}") as resp:
            shown = await resp.json()
        assert [t["event"] for t in shown["when"]] == ["case_created", "status_changed"]
        assert shown["if"]["any"][1]["all"][0]["op"] == "gt"
        assert shown["action"]["content"][1] == {"key": "v", "value": 42}
        settings = shown["action"]["settings"]
        assert settings["retry"] == "extended"
        assert (settings["max_per_second"], settings["max_in_flight"]) == (5, 7)
        assert settings["auth"] == {"type": "basic", "username": "crm", "password": "***"}
        assert shown["action"]["response"] == [{"field": "email", "key": "a.b"}]
        page = await console.page(f"/console/automations/{automation}")
        assert "To CRM" in page
        assert 'placeholder="unchanged"' in page
        assert "Requests in flight allowed</dt><dd>not measured yet" in page
        assert "Delivered in the last minute</dt><dd>0" in page
        # Saved again with the password left blank: the stored one is kept.
        await console.post(f"/console/automations/{automation}", automation_fields(
            "Renamed", url, content=(("t", "field", "text-field"),), auth="basic",
            username="crm", password=""))
    async with api.get(f"/api/automations/{automation}") as resp:
        shown = await resp.json()
    assert shown["name"] == "Renamed"
    await api.post(f"/api/forms/{form_id}/cases", json={"data": {"text-field": "x"}})
    sent = await receiver.wait_for(url, 1)
    assert sent[0].headers["Authorization"] == "Basic Y3JtOnMzY3JldA=="


async def test_enable_disable_rotate_and_test_send(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    form_id = await _form_with_hook(make_form)
    url = receiver.endpoint(Reply(body={"answer": "from the receiver"}))
    automation = (await make_automation(form_id, url))["id"]
    path = f"/console/automations/{automation}"
    async with signed_in(stack) as console:
        await console.post(f"{path}/disable", {})
        async with api.get(f"/api/automations/{automation}") as resp:
            assert (await resp.json())["enabled"] is False
        assert "disabled in the console" in await console.page(path)
        await console.post(f"{path}/enable", {})
        body, _ = await console.post(f"{path}/rotate-secret", {"overlap_hours": "2"}, status=400)
        assert "tick the box" in body
        await console.post(f"{path}/rotate-secret", {"overlap_hours": "2", "confirm": "on"})
        body, _ = await console.post(f"{path}/test", {}, status=200)
    assert "from the receiver" in body
    assert "dispatcher status 200" in body
    async with api.get(f"/api/automations/{automation}") as resp:
        shown = await resp.json()
    assert shown["enabled"] is True
    until = datetime.fromisoformat(shown["previous_secret_until"])
    assert timedelta(hours=1.9) < until - datetime.now(UTC) < timedelta(hours=2.1)


async def test_an_automation_page_shows_its_endpoints_limit_and_what_it_delivered_lately(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    form_id = await _form_with_hook(make_form)
    url = receiver.endpoint()
    automation = (await make_automation(form_id, url))["id"]
    for _ in range(3):
        await api.post(f"/api/forms/{form_id}/cases", json={"data": {"text-field": "x"}})
    await receiver.wait_for(url, 3)
    initial, ceiling = (stack.settings.endpoint_initial_concurrency,
                        stack.settings.endpoint_concurrency)

    async def shown() -> str | None:
        async with signed_in(stack) as console:
            page = await console.page(f"/console/automations/{automation}")
        return page if "Delivered in the last minute</dt><dd>3" in page else None

    page = await until(shown)
    assert (f"Requests in flight allowed</dt><dd>{initial} (adapts to its answers; at most "
            f"{ceiling})") in page


async def test_replay_of_failed_deliveries_since_a_time(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, http: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=400), Reply(status=200))
    automation = (await make_automation(hook["form_id"], url))["id"]
    async with http.post(hook["url"], json={"text-field": "fails first"}) as resp:
        assert resp.status == 200
    await receiver.wait_for(url, 1)
    async with signed_in(stack) as console:
        for _ in range(100):
            if "state-failed" in await console.page(
                    f"/console/deliveries?automation={automation}&state=failed"):
                break
            await asyncio.sleep(0.1)
        since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        _, location = await console.post(f"/console/automations/{automation}/replay",
                                         {"state": "failed", "since": since})
        assert "notice=replayed_many&n=1" in location
        assert "Deliveries replayed: 1." in await console.page(location)
    await receiver.wait_for(url, 2)


async def test_health_page_shows_charts_queues_and_outbox(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        http: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    automation = await make_automation(hook["form_id"], url)
    async with http.post(hook["url"], json={"text-field": "charted"}) as resp:
        assert resp.status == 200
    await receiver.wait_for(url, 1)
    async with signed_in(stack) as console:
        for _ in range(100):
            body = await console.page("/console/")
            section = body.split(automation["name"], 1)[1].split("</article>", 1)[0]
            if "1 succeeded" in section:
                break
            await asyncio.sleep(0.1)
    assert re.search(r'aria-label="[^"]*: deliveries per hour over the last 24 hours, '
                     r'1 succeeded, 0 failed, 0 waiting"', section)
    assert "p95 attempt" in section
    assert " ms</strong> over 1 attempt" in section
    prefix = stack.settings.name_prefix
    for queue in (f"{prefix}.casestore", f"{prefix}.dispatcher", f"{prefix}.dead-letters"):
        assert re.search(rf"{re.escape(queue)}.*?</th>\s*<td class=\"num\">\d+</td>", body, re.S)
    assert "Oldest outbox row" in body


async def test_cases_and_a_case_with_its_history_and_deliveries(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await make_automation(hook["form_id"], url)
    async with api.post(f"/api/forms/{hook['form_id']}/cases",
                        json={"data": {"text-field": "a case"}}) as resp:
        case: dict[str, Any] = await resp.json()
    async with api.patch(f"/api/cases/{case['id']}", json={"status": "closed"}) as resp:
        assert resp.status == 200
    await receiver.wait_for(url, 1)
    async with signed_in(stack) as console:
        listing = await console.page(f"/console/forms/{hook['form_id']}/cases")
        assert f'/console/cases/{case["id"]}' in listing
        assert "a case" in listing
        for _ in range(100):
            body = await console.page(f"/console/cases/{case['id']}")
            if "state-succeeded" in body:
                break
            await asyncio.sleep(0.1)
    assert "v2" in body
    assert "registered" in body
    assert "closed" in body
    assert "/console/deliveries/" in body
    await console_404s(stack)


async def console_404s(stack: Stack) -> None:
    async with signed_in(stack) as console:
        for path in ("/console/cases/not-a-uuid", f"/console/cases/{uuid.uuid4()}",
                     "/console/forms/no-such-form", f"/console/deliveries/{uuid.uuid4()}",
                     "/console/nothing-here"):
            assert "Not found" in await console.page(path, status=404)


async def test_a_timed_automation_made_in_the_console_sets_and_clears_timers(
        stack: Stack, make_form: FormFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    """The console writes through the API's path: an existing case gets its timer, and
    disabling the automation removes it."""
    form_id = await _form_with_hook(make_form)
    case = await new_case(api, form_id)
    n = KINDS_ORDER.index("lead_time_exceeded")
    async with signed_in(stack) as console:
        _, location = await console.post(f"/console/forms/{form_id}/automations/new", [
            *automation_fields("Overdue", receiver.endpoint(), when=("lead_time_exceeded",),
                               content=(("n", "meta", "case_number"),)),
            (f"when-{n}-duration", "P3D"), (f"when-{n}-until_status", "closed")])
        automation = location.split("/")[-1].split("?")[0]

        async def timers() -> list[dict[str, Any]] | None:
            found = await call(api, "GET", f"/api/automations/{automation}/timers", 200)
            return found["timers"] or None

        [timer] = await until(timers)
        assert timer["case_id"] == case["id"]
        await console.post(f"/console/automations/{automation}/disable", {})
    assert (await call(api, "GET", f"/api/automations/{automation}/timers", 200))["timers"] == []


CONTENT = (("t", "field", "text-field"),)


async def test_the_editor_sets_every_kind_of_auth_and_headers_and_keeps_a_blank_secret(
        stack: Stack, make_form: FormFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    form_id = await _form_with_hook(make_form)
    url = receiver.endpoint()
    oauth: dict[str, Any] = {"auth": "oauth2_client_credentials", "token_url": "http://127.0.0.1:9/token",
             "client_id": "crm", "scope": "", "client_auth": "body"}
    async with signed_in(stack) as console:
        _, location = await console.post(f"/console/forms/{form_id}/automations/new", [
            *automation_fields("Keyed", url, content=CONTENT, **oauth, password="cl1ent-s3cret"),
            ("headers", "X-Tenant: acme\nAccept-Language: sv")])
        automation = location.split("/")[-1].split("?")[0]
        shown = await call(api, "GET", f"/api/automations/{automation}", 200)
        settings = shown["action"]["settings"]
        assert settings["auth"] == {"type": "oauth2_client_credentials", "client_id": "crm",
                                    "token_url": "http://127.0.0.1:9/token",
                                    "client_secret": "***", "scope": None,
                                    "client_auth": "body"}
        assert settings["headers"] == {"X-Tenant": "acme", "Accept-Language": "sv"}
        page = await console.page(f"/console/automations/{automation}")
        assert "X-Tenant: acme" in page
        assert "cl1ent-s3cret" not in page
        # A blank secret keeps the stored one; a reserved header is refused next to its input.
        await console.post(f"/console/automations/{automation}", [
            *automation_fields("Keyed", url, content=CONTENT, **oauth, password=""),
            ("headers", "")])
        body, _ = await console.post(f"/console/automations/{automation}", [
            *automation_fields("Keyed", url, content=CONTENT, auth="api_key", auth_header="X-Key",
                               password="k3y"), ("headers", "Content-Type: text/plain")],
            status=400)
        assert "set by Casewire" in body
        await console.post(f"/console/automations/{automation}", [
            *automation_fields("Keyed", url, content=CONTENT, auth="api_key", auth_header="X-Key",
                               password="k3y")])
    await api.post(f"/api/forms/{form_id}/cases", json={"data": {"text-field": "x"}})
    [sent] = await receiver.wait_for(url, 1)
    assert sent.headers["X-Key"] == "k3y"


async def test_the_editor_offers_date_reached_only_date_fields_and_case_created_once(
        stack: Stack, make_form: FormFactory, make_automation: AutomationFactory) -> None:
    form_id = await _form_with_hook(make_form)
    automation = await make_automation(form_id, "http://127.0.0.1:9/x")  # on case_created
    n = [k.event for k in KINDS].index("date_reached")
    async with signed_in(stack) as console:
        new = await console.page(f"/console/forms/{form_id}/automations/new")
        offered = re.search(rf'<select id="when-{n}-field".*?</select>', new, re.S)
        assert offered is not None
        assert "due-date" in offered.group(0)
        assert "text-field" not in offered.group(0)
        assert "priority" not in offered.group(0)
        shown = await console.page(f"/console/automations/{automation['id']}")
        assert shown.count("<code>case_created</code>") == 1
