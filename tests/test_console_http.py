"""The console without a browser: sign-in, the session cookie, CSRF, forms and the webhook page."""

import uuid

import aiohttp
import pytest

from services.casestore.console.app import create_console
from services.casestore.console.session import COOKIE, SESSION_SECONDS, SessionKeys
from services.cli.run import banner
from shared.settings import Settings
from tests.console_helpers import form_fields, signed_in
from tests.helpers import create_automation, new_case, new_form
from tests.stack import Stack

pytestmark = pytest.mark.timeout(60)


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
    async with http.get(base + "/console", allow_redirects=False) as resp:
        assert resp.headers["Location"] == "/console/"
    async with http.get(base + "/console", allow_redirects=True) as resp:
        body = await resp.text()
    assert resp.url.path == "/console/sign-in"
    assert "Password or admin token" in body
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
    expires, nonce, who, signature = cookie.split(".")
    assert keys.read(f"{int(expires) + 3600}.{nonce}.{who}.{signature}", now=1_000_000) is None
    # Another account's name on a signed cookie signs nobody in.
    assert keys.read(f"{expires}.{nonce}.{b'ana'.hex()}.{signature}", now=1_000_000) is None
    ana = keys.read(keys.issue("ana", now=1_000_000), now=1_000_000)
    assert ana is not None
    assert ana.username == "ana"
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


async def test_every_post_route_of_the_console_refuses_a_request_without_its_csrf_token(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    """From the console's route table, so a route added later (or sign-out made public by
    mistake) cannot slip past: signed in, without the token or with a wrong one, each POST is
    refused, and the session it did not end still works."""
    form = await new_form(api)
    automation = (await create_automation(api, form))["id"]
    case = await new_case(api, form)
    ids = {"form_id": form, "automation_id": automation, "case_id": case["id"],
           "delivery_id": str(uuid.uuid4())}
    posts = [r.resource.canonical for r in create_console(stack.settings).router.routes()
             if r.method == "POST" and r.resource is not None]
    public = {"/sign-in"}
    assert public < set(posts)
    assert len(posts) > 10
    async with signed_in(stack) as console:
        for path in sorted(set(posts) - public):
            url = console.base + "/console" + path.format(**ids)
            for csrf in ([], [("csrf", "0" * 64)], [("csrf", "")]):
                async with console.session.post(url, data=[("confirm", "yes"), *csrf],
                                                allow_redirects=False) as resp:
                    assert resp.status == 403, (path, csrf, resp.status)
        await console.page("/console/forms")  # sign-out was refused: still signed in


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


async def test_the_webhook_page_creates_a_user_allowed_on_the_form_who_gets_an_auth_key(
        stack: Stack, api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    form_id = new_id()
    async with api.post("/api/forms", json={"id": form_id, "name": "W", "fields": [
            {"id": "title", "label": "Title", "type": "text"}]}) as resp:
        assert resp.status == 201
    username = f"crm-{form_id}"
    async with signed_in(stack) as console:
        await console.post(f"/console/forms/{form_id}/webhook",
                           {"enabled": "on", "authenticate_user": "on"})
        await console.post(f"/console/forms/{form_id}/webhook/users/new",
                           {"username": username, "password": "long-enough"})
        body, _ = await console.post(f"/console/forms/{form_id}/webhook/users/new",
                                     {"username": username, "password": "long-enough"},
                                     status=400)
        assert "exists already" in body
        body, _ = await console.post(f"/console/forms/{form_id}/webhook/users/new",
                                     {"username": "short", "password": "x"}, status=400)
        assert "password" in body
    async with api.get(f"/api/forms/{form_id}/incoming-webhook") as resp:
        url = (await resp.json())["url"]
    async with http.post(url, json={"username": username, "password": "long-enough"}) as resp:
        assert resp.status == 200, await resp.text()
        assert "auth_key" in await resp.json()


async def test_the_form_page_deletes_a_form_with_its_cases_once_confirmed(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    form_id = new_id()
    async with api.post("/api/forms", json={"id": form_id, "name": "D", "fields": [
            {"id": "title", "label": "Title", "type": "text"}]}) as resp:
        assert resp.status == 201
    async with api.post(f"/api/forms/{form_id}/cases", json={"data": {}}) as resp:
        assert resp.status == 201
    async with signed_in(stack) as console:
        body, _ = await console.post(f"/console/forms/{form_id}/delete", {}, status=409)
        assert "still has 1 case(s)" in body
        _, location = await console.post(f"/console/forms/{form_id}/delete",
                                         {"with_cases": "on"})
        assert location.startswith("/console/forms?notice=form_deleted")
    async with api.get(f"/api/forms/{form_id}") as resp:
        assert resp.status == 404


def test_run_banner_prints_the_console_url(settings: Settings) -> None:
    printed = banner(settings, "token", "http://hook")
    assert f"console     http://127.0.0.1:{settings.casestore_port}/console/" in printed
