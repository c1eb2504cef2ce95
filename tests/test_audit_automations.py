"""Automations and replays in the audit log: one row per change or replay, by whoever made it
(an API token's account, a console session), secrets never in the row; a refused write and a
test send write none; a person's disable and enable told to operators; a viewer never sees
a signing secret."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest

from services.casestore.actors import Role
from tests.console_helpers import signed_in
from tests.helpers import (
    call,
    create_automation,
    definition,
    new_case,
    new_form,
    unique,
    until,
    webhook_action,
)
from tests.receiver import Receiver
from tests.scheduling import shown
from tests.stack import Stack
from tests.test_operational_events import events_of, operational

__all__ = ["operational"]  # a fixture used here

pytestmark = pytest.mark.timeout(90)
RoleClients = Callable[[Role], Awaitable[aiohttp.ClientSession]]
PASSWORD = "correct horse battery staple"  # a test account's
# A Fernet token's first bytes (version 0x80, then the timestamp): a stored secret's ciphertext.
CIPHERTEXT = "gAAAAA"


def bearer(token: str, **overrides: Any) -> dict[str, Any]:
    body = definition(**overrides)
    body["action"]["settings"]["auth"] = {"type": "bearer", "token": token}
    return body


async def entries(api: aiohttp.ClientSession, **params: str) -> list[dict[str, Any]]:
    """The audit log's rows (newest first) for these filters, as the admin reads them."""
    found: list[dict[str, Any]] = (await call(api, "GET", "/api/audit-log", 200,
                                              params=params))["entries"]
    return found


async def newest_account(api: aiohttp.ClientSession) -> str:
    """The username of the account created last (as_role's, just made)."""
    made = await entries(api, actor="admin-token", limit="20")
    return str(next(e["target_id"] for e in made if e["action"] == "account.created"))


async def editor_of(api: aiohttp.ClientSession, as_role: RoleClients) -> tuple[
        aiohttp.ClientSession, str]:
    client = await as_role("editor")
    return client, await newest_account(api)


async def account(api: aiohttp.ClientSession, role: str) -> str:
    """An account that signs in to the console with PASSWORD."""
    username = unique(role)
    await call(api, "POST", "/api/accounts", 201,
               {"username": username, "role": role, "password": PASSWORD})
    return username


async def test_each_automation_change_is_one_row_by_its_editor_with_secrets_masked(
        api: aiohttp.ClientSession, as_role: RoleClients) -> None:
    editor, username = await editor_of(api, as_role)
    form_id = await new_form(api)
    first_token, second_token = f"tok-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"
    created = await create_automation(editor, form_id, bearer(first_token))
    path = f"/api/automations/{created['id']}"
    await call(editor, "PUT", path, 200, bearer(second_token, name="renamed"))
    rotated = await call(editor, "POST", f"{path}/rotate-secret", 200)
    await call(editor, "POST", f"{path}/disable", 200, {"reason": "receiver migrating"})
    await call(editor, "POST", f"{path}/enable", 200)
    await call(editor, "DELETE", path, 200)

    log = await entries(api, target=created["id"])
    assert [e["action"] for e in log] == [
        "automation.deleted", "automation.enabled", "automation.disabled",
        "automation.secret_rotated", "automation.updated", "automation.created"]
    assert {(e["actor"], e["target_type"]) for e in log} == {(username, "automation")}
    assert all(e["via"].startswith("api token cw_") for e in log)
    deleted, enabled, disabled, secret_rotated, updated, made = (e["diff"] for e in log)
    assert made["before"] is None
    assert (made["after"]["name"], made["after"]["enabled"]) == (created["name"], True)
    assert made["after"]["action"]["settings"]["auth"] == {"type": "bearer", "token": "***"}
    assert made["after"]["secret"] == "***"
    assert set(updated["changed"]) == {"name", "action.settings.auth.token"}
    assert (updated["before"]["name"], updated["after"]["name"]) == (created["name"], "renamed")
    assert set(secret_rotated["changed"]) == {"secret", "previous_secret_until"}
    assert disabled["changed"] == ["disabled_reason", "enabled"]
    assert disabled["after"]["disabled_reason"] == "receiver migrating"
    assert (enabled["before"]["enabled"], enabled["after"]["enabled"]) == (False, True)
    assert deleted["after"] is None
    assert deleted["before"]["name"] == "renamed"
    raw = orjson.dumps(log).decode()
    for secret in (first_token, second_token, created["secret"], rotated["secret"],
                   CIPHERTEXT):
        assert secret not in raw


async def test_a_refused_write_a_no_change_and_a_test_send_write_no_row(
        api: aiohttp.ClientSession, as_role: RoleClients) -> None:
    editor, username = await editor_of(api, as_role)
    form_id = await new_form(api)
    created = await create_automation(editor, form_id)
    path = f"/api/automations/{created['id']}"
    await call(editor, "POST", f"/api/forms/{form_id}/automations", 400,
               {**definition(), "name": ""})
    await call(editor, "PUT", path, 400, {**definition(), "name": ""})
    await call(editor, "POST", f"{path}/enable", 200)  # enabled already: nothing changes
    async with editor.post(f"{path}/test", json={}) as resp:
        await resp.read()  # whatever the unreachable receiver answered: no configuration
    missing = f"/api/automations/{uuid.uuid4()}"
    for method, suffix in (("PUT", ""), ("DELETE", ""), ("POST", "/enable"),
                           ("POST", "/disable"), ("POST", "/rotate-secret"),
                           ("POST", "/replay")):
        await call(editor, method, missing + suffix, 404,
                   definition() if method == "PUT" else None)
    await call(editor, "POST", f"/api/deliveries/{uuid.uuid4()}/replay", 404)
    await call(editor, "POST", f"{path}/disable", 200)
    await call(editor, "POST", f"{path}/disable", 200)  # disabled already: nothing changes
    log = await entries(api, actor=username)
    assert [(e["action"], e["target_id"]) for e in log] == [
        ("automation.disabled", created["id"]), ("automation.created", created["id"])]


async def test_a_person_disabling_and_enabling_is_told_to_operators(
        operational: dict[str, Any], api: aiohttp.ClientSession, as_role: RoleClients,
        receiver: Receiver) -> None:
    editor, username = await editor_of(api, as_role)
    form_id = await new_form(api)
    automation = await create_automation(editor, form_id)
    path = f"/api/automations/{automation['id']}"
    await call(editor, "POST", f"{path}/disable", 200, {"reason": "receiver migrating"})
    await call(editor, "POST", f"{path}/enable", 200)
    [disabled] = await events_of(receiver, operational, "automation.disabled", automation["id"])
    assert disabled.json()["data"] == {"automation_id": automation["id"], "form_id": form_id,
                                       "reason": "receiver migrating", "by": username}
    [enabled] = await events_of(receiver, operational, "automation.enabled", automation["id"])
    assert enabled.json()["data"] == {"automation_id": automation["id"], "form_id": form_id,
                                      "by": username}


async def delivered(api: aiohttp.ClientSession, automation: dict[str, Any],
                    state: str = "succeeded") -> str:
    """The automation's one delivery, once it is in `state`; its id."""

    async def listed() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await call(api, "GET", "/api/deliveries", 200, params={
            "automation": automation["id"], "state": state}))["deliveries"]
        return found

    [delivery] = await until(listed, within=20, failure=f"no delivery got {state}")
    return str(delivery["id"])


async def test_each_replay_request_is_one_row(
        api: aiohttp.ClientSession, as_role: RoleClients, receiver: Receiver,
        stack: Stack) -> None:
    editor, username = await editor_of(api, as_role)
    form_id = await new_form(api)
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    automation = await create_automation(editor, form_id, {
        "name": unique("replayed"), "when": [{"event": "case_created"}],
        "action": webhook_action(receiver.endpoint())})
    await new_case(api, form_id)
    delivery_id = await delivered(api, automation)
    await call(editor, "POST", f"/api/deliveries/{delivery_id}/replay", 202)
    await shown(api, uuid.UUID(delivery_id), "succeeded", within=20)
    replayed = await call(editor, "POST", f"/api/automations/{automation['id']}/replay", 202,
                          {"state": "succeeded", "since": since})
    assert replayed["replayed"] == 1

    [one] = await entries(api, target=delivery_id)
    assert (one["action"], one["target_type"], one["actor"]) == (
        "delivery.replayed", "delivery", username)
    assert (one["diff"]["before"]["state"], one["diff"]["after"]["state"]) == (
        "succeeded", "pending")
    assert one["diff"]["after"]["automation_id"] == automation["id"]
    many = (await entries(api, target=automation["id"]))[0]
    assert (many["action"], many["target_type"], many["actor"]) == (
        "automation.replayed", "automation", username)
    assert many["diff"]["after"] == {"states": ["succeeded"],
                                     "since": datetime.fromisoformat(since).isoformat(),
                                     "replayed": 1}

    # The console replays through the same steps, and its rows name the console.
    console_user = await account(api, "editor")
    await shown(api, uuid.UUID(delivery_id), "succeeded", within=20)
    async with signed_in(stack, console_user, PASSWORD) as console:
        await console.post(f"/console/deliveries/{delivery_id}/replay", {})
        await shown(api, uuid.UUID(delivery_id), "succeeded", within=20)
        await console.post(f"/console/automations/{automation['id']}/replay", {
            "state": "both", "since": since[:16]})
    log = await entries(api, actor=console_user)
    assert [(e["action"], e["target_id"], e["via"]) for e in log] == [
        ("automation.replayed", automation["id"], "console"),
        ("delivery.replayed", delivery_id, "console")]
    assert log[0]["diff"]["after"] == {"since": since[:16] + ":00+00:00", "replayed": 1}


async def test_console_enable_disable_is_audited_with_the_console_actor(
        api: aiohttp.ClientSession, stack: Stack) -> None:
    username = await account(api, "editor")
    automation = await create_automation(api, await new_form(api))
    async with signed_in(stack, username, PASSWORD) as console:
        await console.post(f"/console/automations/{automation['id']}/disable", {})
        await console.post(f"/console/automations/{automation['id']}/enable", {})
    log = await entries(api, target=automation["id"])
    assert [(e["action"], e["actor"], e["via"]) for e in log[:2]] == [
        ("automation.enabled", username, "console"),
        ("automation.disabled", username, "console")]
    assert log[1]["diff"]["after"]["disabled_reason"] == "disabled in the console"
    assert (log[2]["action"], log[2]["actor"]) == ("automation.created", "admin-token")


async def test_a_viewer_sees_no_signing_secret(
        api: aiohttp.ClientSession, as_role: RoleClients, stack: Stack) -> None:
    form_id = await new_form(api)
    automation = await create_automation(api, form_id, bearer("tok-never-shown"))
    path = f"/api/automations/{automation['id']}"
    assert (await call(api, "GET", path, 200))["secret"] == automation["secret"]
    viewer = await as_role("viewer")
    seen = await call(viewer, "GET", path, 200)
    assert seen["secret"] == "***"
    assert seen["action"]["settings"]["auth"] == {"type": "bearer", "token": "***"}
    listed = await call(viewer, "GET", f"/api/forms/{form_id}/automations", 200)
    assert [a["secret"] for a in listed["automations"]] == ["***"]
    username = await account(api, "viewer")
    async with signed_in(stack, username, PASSWORD) as console:
        page = await console.page(f"/console/automations/{automation['id']}")
    assert automation["secret"] not in page
    assert "Only editors and admins see the signing secret." in page
    async with signed_in(stack) as console:
        page = await console.page(f"/console/automations/{automation['id']}")
    assert automation["secret"] in page
