"""The console without a browser: sign-in, session cookie, CSRF, and each page's server side."""

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from services.casestore.console.session import COOKIE, SESSION_SECONDS, SessionKeys
from services.casestore.console.triggers import KINDS
from services.cli import _banner
from shared.settings import Settings
from tests.conftest import AutomationFactory, FormFactory
from tests.console_helpers import automation_fields, form_fields, signed_in
from tests.receiver import Receiver, Reply
from tests.stack import Stack

pytestmark = pytest.mark.timeout(60)
KINDS_ORDER = [k.event for k in KINDS]


def new_id() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


async def test_signed_out_visitor_is_sent_to_sign_in(stack: Stack,
                                                     http: aiohttp.ClientSession) -> None:
    base = stack.url("casestore")
    for path in ("/console/", "/console/forms", "/console/deliveries",
                 f"/console/automations/{uuid.uuid4()}"):
        async with http.get(base + path, allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"].startswith("/console/sign-in?next=")
    async with http.get(base + "/console", allow_redirects=True) as resp:
        body = await resp.text()
    assert resp.url.path == "/console/sign-in"
    assert "Admin token" in body
    assert "Deliveries" not in body


async def test_post_without_a_session_is_refused(stack: Stack,
                                                 http: aiohttp.ClientSession) -> None:
    async with http.post(stack.url("casestore") + "/console/forms/new",
                         data={"id": new_id(), "name": "x"}, allow_redirects=False) as resp:
        assert resp.status == 403


async def test_wrong_token_gets_no_session(stack: Stack) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(stack.url("casestore") + "/console/sign-in",
                                data={"token": "not-the-token"}, allow_redirects=False) as resp:
            assert resp.status == 401
            assert "That is not the admin token" in await resp.text()
            assert COOKIE not in resp.cookies
        assert len(session.cookie_jar) == 0


async def test_session_cookie_is_httponly_strict_and_expires(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            stack.url("casestore") + "/console/sign-in", allow_redirects=False,
            data={"token": stack.settings.admin_token, "next": "/console/forms"}) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == "/console/forms"
        cookie = resp.cookies[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/console"
    assert int(cookie["max-age"]) == SESSION_SECONDS


async def test_sign_in_never_sends_the_browser_to_another_site(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            stack.url("casestore") + "/console/sign-in", allow_redirects=False,
            data={"token": stack.settings.admin_token, "next": "//evil.example/x"}) as resp:
        assert resp.headers["Location"] == "/console/"


def test_session_cookie_tampered_or_expired_is_no_session() -> None:
    keys = SessionKeys.derive("signing-key", "admin-token")
    cookie = keys.issue(now=1_000_000)
    assert keys.read(cookie, now=1_000_000 + 60) is not None
    assert keys.read(cookie, now=1_000_000 + SESSION_SECONDS + 1) is None
    expires, nonce, signature = cookie.split(".")
    assert keys.read(f"{int(expires) + 3600}.{nonce}.{signature}", now=1_000_000) is None
    assert keys.read(cookie.replace(nonce, "0" * len(nonce)), now=1_000_000) is None
    other = SessionKeys.derive("signing-key", "another-admin-token")
    assert other.read(cookie, now=1_000_000) is None  # a new admin token signs everyone out


async def test_post_without_csrf_token_is_refused(stack: Stack) -> None:
    form_id = new_id()
    async with signed_in(stack) as console:
        async with console.session.post(console.base + "/console/forms/new",
                                        data=form_fields(form_id, {"id": "t", "label": "T"}),
                                        allow_redirects=False) as resp:
            assert resp.status == 403
            assert "did not come from the console" in await resp.text()
        wrong = [*form_fields(form_id, {"id": "t", "label": "T"}), ("csrf", "0" * 64)]
        async with console.session.post(console.base + "/console/forms/new", data=wrong,
                                        allow_redirects=False) as resp:
            assert resp.status == 403
        await console.page(f"/console/forms/{form_id}", status=404)
        _, location = await console.post("/console/forms/new",
                                         form_fields(form_id, {"id": "t", "label": "T"}))
        assert location == f"/console/forms/{form_id}?notice=form_created"


async def test_post_from_another_origin_is_refused(stack: Stack) -> None:
    async with signed_in(stack) as console:
        csrf = await console.csrf()
        async with console.session.post(
                console.base + "/console/sign-out", data={"csrf": csrf},
                headers={"Origin": "https://evil.example"}, allow_redirects=False) as resp:
            assert resp.status == 403


async def test_pages_carry_security_headers(stack: Stack) -> None:
    async with signed_in(stack) as console, console.session.get(
            console.base + "/console/forms") as resp:
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-store"


async def test_form_errors_are_shown_next_to_their_field(stack: Stack) -> None:
    async with signed_in(stack) as console:
        body, _ = await console.post("/console/forms/new", form_fields(
            new_id(), {"id": "title", "label": "Title"},
            {"id": "Bad Id", "label": "Bad"},
            {"id": "kind", "label": "Kind", "type": "select"}), status=400)
    rows = body.split('<div class="field-row')[1:]
    assert len(rows) == 3
    assert 'class="error"' not in rows[0]
    assert 'class="error" id="err-field-1"' in rows[1]
    assert "should match pattern" in rows[1]
    assert 'id="err-field-2"' in rows[2]
    assert "needs a list of options" in rows[2]
    assert 'value="Bad Id"' in body  # what was typed is kept


async def test_form_editor_saves_sections_fields_and_statuses(stack: Stack,
                                                              api: aiohttp.ClientSession) -> None:
    form_id = new_id()
    async with signed_in(stack) as console:
        await console.post("/console/forms/new", form_fields(
            form_id, {"id": "title", "label": "Title", "mandatory": True}))
        await console.post(f"/console/forms/{form_id}", form_fields(
            form_id, {"id": "title", "label": "Title", "mandatory": True},
            {"id": "kind", "label": "Kind", "type": "select", "options": "a\nb"},
            {"id": "notes", "label": "Notes", "type": "textarea", "section": 1},
            name="Renamed", statuses="new\ndone"))
        await console.post(f"/console/forms/{form_id}", [
            *form_fields(form_id, {"id": "title", "label": "Title"},
                         {"id": "kind", "label": "Kind", "type": "select", "options": "a\nb"}),
            ("field-1-remove", "on")])
    async with api.get(f"/api/forms/{form_id}") as resp:
        form = await resp.json()
    assert [f["id"] for f in form["fields"]] == ["title"]
    assert form["statuses"] == ["registered", "closed"]
    assert form["name"] == "Console form"


async def test_webhook_page_enables_rotates_and_allows_users(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    form_id = new_id()
    async with api.post("/api/forms", json={"id": form_id, "name": "W", "fields": [
            {"id": "title", "label": "Title", "type": "text", "mandatory": True}]}) as resp:
        assert resp.status == 201
    async with api.post("/api/users", json={"username": f"u-{form_id}",
                                            "password": "long-enough"}) as resp:
        assert resp.status == 201
    async with signed_in(stack) as console:
        await console.post(f"/console/forms/{form_id}/webhook",
                           {"enabled": "on", "authenticate_user": "on"})
        async with api.get(f"/api/forms/{form_id}/incoming-webhook") as resp:
            hook = await resp.json()
        assert hook["enabled"]
        assert hook["authenticate_user"]
        body = await console.page(f"/console/forms/{form_id}/webhook")
        assert hook["url"] in body
        assert "curl -X POST" in body
        assert "data-copy" in body
        body, _ = await console.post(f"/console/forms/{form_id}/webhook/rotate", {},
                                     status=400)
        assert "Tick the box" in body
        await console.post(f"/console/forms/{form_id}/webhook/rotate", {"confirm": "on"})
        await console.post(f"/console/forms/{form_id}/webhook/users",
                           {"allowed": f"u-{form_id}"})
        async with console.session.get(
                f"{console.base}/console/forms/{form_id}/structure.json") as resp:
            assert "attachment" in resp.headers["Content-Disposition"]
            structure = await resp.json(content_type=None)
    async with api.get(f"/api/forms/{form_id}/incoming-webhook") as resp:
        assert (await resp.json())["token"] != hook["token"]
    assert structure["fields"][0]["id"] == "title"
    assert structure["incoming_webhook_url"] != hook["url"]
    async with api.get("/api/users") as resp:
        users = {u["username"]: u["forms"] for u in (await resp.json())["users"]}
    assert users[f"u-{form_id}"] == [form_id]


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
                               retry="extended", max_per_second="5"),
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
        assert settings["max_per_second"] == 5
        assert settings["auth"] == {"type": "basic", "username": "crm", "password": "***"}
        assert shown["action"]["response"] == [{"field": "email", "key": "a.b"}]
        page = await console.page(f"/console/automations/{automation}")
        assert "To CRM" in page
        assert 'placeholder="unchanged"' in page
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


def test_run_banner_prints_the_console_url(settings: Settings) -> None:
    banner = _banner(settings, "token", "http://hook")
    assert f"console     http://127.0.0.1:{settings.casestore_port}/console/" in banner
