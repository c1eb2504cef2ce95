"""The audit log of forms, incoming webhooks and their users, over the API and the console;
and the webhook's secrets kept from viewers."""

from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import RoleClients
from tests.console_helpers import form_fields, signed_in
from tests.helpers import call, full_form, new_account, unique
from tests.stack import Stack

pytestmark = pytest.mark.timeout(60)
PASSWORD = "a long enough password"


async def entries(api: aiohttp.ClientSession, target: str) -> list[dict[str, Any]]:
    """The audit rows of `target`, oldest first."""
    log = await call(api, "GET", "/api/audit-log", 200, params={"target": target})
    return list(reversed(log["entries"]))


async def assert_is_caller(client: aiohttp.ClientSession, entry: dict[str, Any]) -> None:
    """The row's actor is the account `client` calls as: only it may read its account."""
    assert entry["actor"] not in ("admin-token", "system")
    assert entry["via"].startswith("api token cw_")
    await call(client, "GET", f"/api/accounts/{entry['actor']}", 200)


async def test_form_changes_are_audited_with_their_actor_and_diff(
        api: aiohttp.ClientSession, as_role: RoleClients) -> None:
    editor = await as_role("editor")
    form = full_form()
    form_id = form["id"]
    await call(editor, "POST", "/api/forms", 201, form)
    renamed = {**form, "fields": [{**form["fields"][0], "label": "Renamed"},
                                  *form["fields"][1:]]}
    await call(editor, "PUT", f"/api/forms/{form_id}", 200, renamed)
    # Failed writes leave no row.
    await call(editor, "POST", "/api/forms", 409, form)
    await call(editor, "PUT", f"/api/forms/{form_id}", 400, {**renamed, "id": "other"})
    await call(editor, "PUT", f"/api/forms/{form_id}", 400, {**renamed, "statuses": []})
    missing = unique("missing")
    await call(editor, "PUT", f"/api/forms/{missing}", 404, {**renamed, "id": missing})
    await call(editor, "DELETE", f"/api/forms/{missing}", 404)
    await call(editor, "DELETE", f"/api/forms/{form_id}", 400, params={"with_cases": "maybe"})
    assert await entries(api, missing) == []
    await call(editor, "DELETE", f"/api/forms/{form_id}", 200)

    created, updated, deleted = await entries(api, form_id)
    assert [e["action"] for e in (created, updated, deleted)] == [
        "form.created", "form.updated", "form.deleted"]
    assert {e["target_type"] for e in (created, updated, deleted)} == {"form"}
    assert len({e["actor"] for e in (created, updated, deleted)}) == 1
    await assert_is_caller(editor, created)
    assert (created["diff"]["before"], created["diff"]["after"]) == (None, form)
    assert updated["diff"]["changed"] == ["fields.0.label"]
    assert (updated["diff"]["before"]["fields"][0]["label"],
            updated["diff"]["after"]["fields"][0]["label"]) == ("Text", "Renamed")
    assert (deleted["diff"]["before"], deleted["diff"]["after"]) == (renamed, None)


async def test_webhook_changes_are_audited_with_secrets_masked(
        api: aiohttp.ClientSession, as_role: RoleClients) -> None:
    editor = await as_role("editor")
    form = full_form()
    form_id = form["id"]
    await call(api, "POST", "/api/forms", 201, form)
    await call(editor, "POST", f"/api/forms/{form_id}/incoming-webhook/rotate", 404)
    first = await call(editor, "PUT", f"/api/forms/{form_id}/incoming-webhook", 200,
                       {"verify": {"scheme": "standard-webhooks"}})
    assert first["verify"]["secret"].startswith("whsec_")
    await call(editor, "PUT", f"/api/forms/{form_id}/incoming-webhook", 400,
               {"verify": {"scheme": "no-such-scheme"}})
    await call(editor, "PUT", f"/api/forms/{form_id}/incoming-webhook", 200,
               {"enabled": True, "authenticate_user": True})
    rotated = await call(editor, "POST", f"/api/forms/{form_id}/incoming-webhook/rotate", 200)
    username = unique("crm")
    await call(api, "POST", "/api/users", 201,
               {"username": username, "password": PASSWORD, "forms": [form_id]})
    keys = f"/api/forms/{form_id}/incoming-webhook/auth-keys"
    await call(editor, "POST", keys, 400, {"username": username, "password": "wrong password"})
    issued = await call(editor, "POST", keys, 200, {"username": username, "password": PASSWORD})
    await call(editor, "DELETE", keys, 200, {"username": username, "password": PASSWORD})

    log = await entries(api, form_id)
    assert [e["action"] for e in log] == [
        "form.created", "incoming_webhook.updated", "incoming_webhook.updated",
        "incoming_webhook.token_rotated", "incoming_webhook.auth_keys_issued",
        "incoming_webhook.auth_keys_revoked"]
    for entry in log[1:]:
        await assert_is_caller(editor, entry)
    made, changed, rotation, issue, revoke = log[1:]
    assert made["diff"]["before"] is None
    assert made["diff"]["after"]["token"] == "***"
    assert made["diff"]["after"]["url"].endswith("/hooks/***")
    assert made["diff"]["after"]["verify"]["secret"] == "***"
    assert changed["diff"]["changed"] == ["authenticate_user"]
    assert rotation["diff"]["changed"] == ["token"]
    assert issue["diff"]["after"] == {"username": username}
    assert revoke["diff"]["before"] == {"username": username, "revoked": 1}
    written = orjson.dumps(log).decode()
    for secret in (first["token"], rotated["token"], first["verify"]["secret"],
                   issued["auth_key"]):
        assert secret not in written


async def test_user_changes_are_audited_without_passwords(
        api: aiohttp.ClientSession, as_role: RoleClients) -> None:
    editor = await as_role("editor")
    forms = [(await call(api, "POST", "/api/forms", 201, full_form()))["id"] for _ in range(2)]
    username = unique("user")
    await call(editor, "POST", "/api/users", 201,
               {"username": username, "password": PASSWORD, "forms": forms[:1]})
    await call(editor, "POST", "/api/users", 409,
               {"username": username, "password": PASSWORD, "forms": []})
    await call(editor, "PUT", f"/api/users/{username}", 400, {"forms": [unique("nowhere")]})
    await call(editor, "PUT", f"/api/users/{username}", 200,
               {"forms": forms, "password": "another long password"})
    missing = unique("nobody")
    await call(editor, "POST", "/api/users", 400,
               {"username": missing, "password": PASSWORD, "forms": [unique("nowhere")]})
    await call(editor, "PUT", f"/api/users/{missing}", 404, {"forms": []})
    await call(editor, "DELETE", f"/api/users/{missing}", 404)
    await call(editor, "DELETE", f"/api/users/{username}", 200)

    assert await entries(api, missing) == []
    created, updated, deleted = log = await entries(api, username)
    assert [e["action"] for e in log] == ["user.created", "user.updated", "user.deleted"]
    assert {e["target_type"] for e in log} == {"user"}
    for entry in log:
        await assert_is_caller(editor, entry)
    assert created["diff"]["after"] == {"username": username, "forms": forms[:1]}
    assert updated["diff"]["changed"] == ["forms", "password"]
    assert updated["diff"]["after"] == {"username": username, "forms": sorted(forms),
                                        "password": "***"}
    assert (deleted["diff"]["before"], deleted["diff"]["after"]) == (
        {"username": username, "forms": sorted(forms)}, None)
    written = orjson.dumps(log).decode()
    assert PASSWORD not in written
    assert "another long password" not in written


async def test_console_changes_are_audited_with_the_console_actor(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    username = await new_account(api, "editor", PASSWORD)
    form_id, user = unique("cf"), unique("crm")
    async with signed_in(stack, username, PASSWORD) as console:
        await console.post("/console/forms/new", form_fields(form_id, {"id": "t", "label": "T"}))
        await console.post("/console/forms/new", form_fields(form_id, {"id": "t", "label": "T"}),
                           status=409)
        await console.post(f"/console/forms/{form_id}",
                           form_fields(form_id, {"id": "t", "label": "Renamed"}))
        await console.post(f"/console/forms/{form_id}/webhook", {"enabled": "on"})
        await console.post(f"/console/forms/{form_id}/webhook/rotate", {}, status=400)
        await console.post(f"/console/forms/{form_id}/webhook/rotate", {"confirm": "on"})
        await console.post(f"/console/forms/{form_id}/webhook/users/new",
                           {"username": user, "password": PASSWORD})
        await console.post(f"/console/forms/{form_id}/webhook/users", {})
        await console.post(f"/console/forms/{form_id}/delete", {})

    log = await entries(api, form_id)
    assert [e["action"] for e in log] == [
        "form.created", "form.updated", "incoming_webhook.updated",
        "incoming_webhook.token_rotated", "form.deleted"]
    assert {(e["actor"], e["via"]) for e in log} == {(username, "console")}
    assert log[1]["diff"]["changed"] == ["fields.0.label"]
    assert log[3]["diff"]["changed"] == ["token"]
    users = await entries(api, user)
    assert [(e["action"], e["actor"]) for e in users] == [
        ("user.created", username), ("user.updated", username)]
    assert users[1]["diff"]["after"]["forms"] == []
    assert "/hooks/***" in orjson.dumps(log).decode()


async def test_a_viewer_sees_no_webhook_secret(stack: Stack, api: aiohttp.ClientSession,
                                               as_role: RoleClients) -> None:
    form = full_form()
    form_id = form["id"]
    await call(api, "POST", "/api/forms", 201, form)
    hook = await call(api, "PUT", f"/api/forms/{form_id}/incoming-webhook", 200,
                      {"verify": {"scheme": "standard-webhooks"}})
    viewer, editor = await as_role("viewer"), await as_role("editor")
    assert await call(editor, "GET", f"/api/forms/{form_id}/incoming-webhook", 200) == hook
    shown = await call(viewer, "GET", f"/api/forms/{form_id}/incoming-webhook", 200)
    assert shown == {**hook, "token": "***", "url": hook["url"].replace(hook["token"], "***"),
                     "verify": {**hook["verify"], "secret": "***"}}
    structure = await call(viewer, "GET", f"/api/forms/{form_id}/structure", 200)
    assert structure["incoming_webhook_url"].endswith("/hooks/***")
    assert hook["token"] not in orjson.dumps(structure).decode()
    assert hook["token"] in orjson.dumps(
        await call(editor, "GET", f"/api/forms/{form_id}/structure", 200)).decode()
    await call(viewer, "POST", f"/api/forms/{form_id}/incoming-webhook/rotate", 403)

    async with signed_in(stack, await new_account(api, "viewer", PASSWORD), PASSWORD) as console:
        page = await console.page(f"/console/forms/{form_id}/webhook")
        download = await console.page(f"/console/forms/{form_id}/structure.json")
    assert hook["token"] not in page
    assert "/hooks/***" in page
    assert "does not see secrets" in page
    assert hook["token"] not in download
    assert hook["verify"]["secret"] not in page
    async with signed_in(stack) as console:
        assert hook["token"] in await console.page(f"/console/forms/{form_id}/webhook")
