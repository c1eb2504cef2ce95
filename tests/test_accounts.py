"""Accounts, roles and API tokens on the real casestore: who may call which route, tokens
shown once and revocable, never the last admin, and an audit row for each change."""

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.casestore.actors import Role
from services.casestore.auth import READS
from tests.helpers import call, new_form, unique
from tests.stack import Stack


async def status_of(session: aiohttp.ClientSession, method: str, path: str,
                    body: Any = None) -> tuple[int, Any]:
    async with session.request(method, path, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_viewer_reads_and_a_write_is_403_forbidden_in_the_seed_style(
        as_role: Callable[[Role], Awaitable[aiohttp.ClientSession]],
        api: aiohttp.ClientSession) -> None:
    viewer = await as_role("viewer")
    form_id = await new_form(api)
    status, shown = await status_of(viewer, "GET", f"/api/forms/{form_id}")
    assert (status, shown["id"]) == (200, form_id)
    status, body = await status_of(viewer, "DELETE", f"/api/forms/{form_id}")
    assert status == 403
    assert body["errors"][0]["code"] == "forbidden"
    await call(api, "GET", f"/api/forms/{form_id}", 200)  # still there


def write_routes(stack: Stack) -> list[tuple[str, str, str]]:
    """Every write route casestore's API serves, path parameters filled with ids that name
    nothing: (method, path, route)."""
    app = stack.runners["casestore"].app
    routes = []
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if canonical.startswith("/api/") and route.method not in READS | {"*"}:
            path = re.sub(r"\{[^}]+\}", lambda m: "nobody" if m[0] == "{username}"
                          else str(uuid.uuid4()), canonical)
            routes.append((route.method, path, canonical))
    return routes


ADMIN_ONLY = {"/api/accounts", "/api/accounts/{username}", "/api/accounts/{username}/tokens",
              "/api/accounts/{username}/tokens/{token_id}", "/api/operational-webhook",
              "/api/operational-webhook/rotate-secret", "/api/audit-log"}


@pytest.mark.parametrize("role", ["viewer", "editor", "admin"])
async def test_each_role_against_each_write_route(
        as_role: Callable[[Role], Awaitable[aiohttp.ClientSession]], stack: Stack,
        role: Role) -> None:
    """From the route table, over HTTP: a viewer may write nothing, an editor all but the
    admin's routes (accounts and their tokens, the operational webhook), an admin everything.
    The role is checked before anything else, so the ids naming nothing do not matter."""
    session = await as_role(role)
    routes = write_routes(stack)
    assert len(routes) > 20
    for method, path, canonical in routes:
        status, _ = await status_of(session, method, path, {})
        refused = role == "viewer" or (role == "editor" and canonical in ADMIN_ONLY)
        assert (status == 403) is refused, (role, method, canonical, status)


async def test_the_roles_are_enforced_over_http(
        as_role: Callable[[Role], Awaitable[aiohttp.ClientSession]],
        api: aiohttp.ClientSession) -> None:
    viewer, editor = await as_role("viewer"), await as_role("editor")
    form = {"id": unique("f"), "name": "F", "sections": [{"name": "S"}],
            "fields": [{"id": "t", "label": "T", "type": "text"}]}
    assert (await status_of(viewer, "POST", "/api/forms", form))[0] == 403
    assert (await status_of(editor, "POST", "/api/forms", form))[0] == 201
    body = {"username": unique("x"), "role": "viewer"}
    assert (await status_of(editor, "POST", "/api/accounts", body))[0] == 403
    assert (await status_of(editor, "GET", "/api/accounts"))[0] == 403
    assert (await status_of(viewer, "GET", "/api/audit-log"))[0] == 200


async def test_a_token_is_shown_once_listed_by_prefix_and_revocable(
        api: aiohttp.ClientSession, stack: Stack) -> None:
    username = unique("ed")
    await call(api, "POST", "/api/accounts", 201, {"username": username, "role": "editor"})
    made = await call(api, "POST", f"/api/accounts/{username}/tokens", 201,
                      {"name": "ci", "expires_in_days": 30})
    token = made["token"]
    assert token.startswith("cw_")
    assert len(token) > 40
    assert token.startswith(made["prefix"])
    assert made["expires_at"] is not None
    async with aiohttp.ClientSession(base_url=stack.url("casestore"), headers={
            "Authorization": f"Bearer {token}"}) as own:
        await call(own, "GET", "/api/forms", 200)
        listed = (await call(own, "GET", f"/api/accounts/{username}/tokens", 200))["tokens"]
        assert [(t["name"], t["prefix"]) for t in listed] == [("ci", made["prefix"])]
        assert "token" not in listed[0]
        assert listed[0]["last_used_at"] is not None
        await call(own, "POST", f"/api/accounts/{username}/tokens", 409, {"name": "ci"})
        await call(api, "DELETE", f"/api/accounts/{username}/tokens/{made['id']}", 200)
        await call(own, "GET", "/api/forms", 401)


async def test_expired_tokens_and_disabled_accounts_are_refused(
        api: aiohttp.ClientSession, stack: Stack) -> None:
    username = unique("v")
    await call(api, "POST", "/api/accounts", 201, {"username": username, "role": "viewer"})
    first = await call(api, "POST", f"/api/accounts/{username}/tokens", 201, {"name": "a"})
    second = await call(api, "POST", f"/api/accounts/{username}/tokens", 201, {"name": "b"})
    conn = await asyncpg.connect(stack.settings.database_url)
    try:
        await conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second'"
                           " WHERE id = $1", uuid.UUID(first["id"]))
    finally:
        await conn.close()

    async def status_with(token: str) -> int:
        async with aiohttp.ClientSession(base_url=stack.url("casestore"), headers={
                "Authorization": f"Bearer {token}"}) as http, http.get("/api/forms") as resp:
            return resp.status

    assert (await status_with(first["token"]), await status_with(second["token"])) == (401, 200)
    await call(api, "PATCH", f"/api/accounts/{username}", 200, {"disabled": True})
    assert await status_with(second["token"]) == 401
    await call(api, "PATCH", f"/api/accounts/{username}", 200, {"disabled": False})
    assert await status_with(second["token"]) == 200


async def test_the_last_enabled_admin_stays(api: aiohttp.ClientSession, stack: Stack) -> None:
    conn = await asyncpg.connect(stack.settings.database_url)
    try:  # this test needs to be alone among admins
        await conn.execute("UPDATE accounts SET disabled_at = now()"
                           " WHERE role = 'admin' AND disabled_at IS NULL")
    finally:
        await conn.close()
    first, second = unique("boss"), unique("boss")
    await call(api, "POST", "/api/accounts", 201, {"username": first, "role": "admin"})
    for method, body in (("PATCH", {"role": "editor"}), ("PATCH", {"disabled": True}),
                         ("DELETE", None)):
        refused = await call(api, method, f"/api/accounts/{first}", 409, body)
        assert "last enabled admin" in refused["errors"][0]["message"]
    await call(api, "POST", "/api/accounts", 201, {"username": second, "role": "admin"})
    await call(api, "DELETE", f"/api/accounts/{first}", 200)
    await call(api, "DELETE", f"/api/accounts/{second}", 409)


async def test_reserved_names_and_short_passwords_are_refused(api: aiohttp.ClientSession) -> None:
    for body in ({"username": "system", "role": "viewer"},
                 {"username": "admin-token", "role": "admin"},
                 {"username": unique("p"), "role": "viewer", "password": "short"},
                 {"username": "Not A Slug", "role": "viewer"},
                 {"username": unique("r"), "role": "owner"}):
        await call(api, "POST", "/api/accounts", 400, body)


async def test_account_changes_are_in_the_audit_log_with_secrets_masked(
        api: aiohttp.ClientSession) -> None:
    username = unique("au")
    await call(api, "POST", "/api/accounts", 201,
               {"username": username, "role": "viewer", "password": "correct horse battery"})
    await call(api, "PATCH", f"/api/accounts/{username}", 200,
               {"role": "editor", "password": "another long password"})
    made = await call(api, "POST", f"/api/accounts/{username}/tokens", 201, {"name": "t"})
    log = (await call(api, "GET", "/api/audit-log", 200, params={"target": username}))["entries"]
    assert [e["action"] for e in log] == ["account.updated", "account.created"]
    assert {e["actor"] for e in log} == {"admin-token"}
    updated = log[0]["diff"]
    assert (updated["before"]["role"], updated["after"]["role"]) == ("viewer", "editor")
    assert set(updated["changed"]) >= {"role", "password"}
    assert updated["after"]["password"] == "***"
    token_entry = (await call(api, "GET", "/api/audit-log", 200,
                              params={"target": made["id"]}))["entries"][0]
    assert token_entry["action"] == "token.created"
    assert made["token"] not in str(token_entry)
    await call(api, "POST", "/api/audit-log", 201, {
        "action": "dead_letters.purged", "target_id": "casewire.dead-letters",
        "detail": {"count": 2}})
    [purged] = (await call(api, "GET", "/api/audit-log", 200,
                           params={"target": "casewire.dead-letters", "limit": "1"}))["entries"]
    assert (purged["action"], purged["diff"]["after"]) == ("dead_letters.purged", {"count": 2})
    await call(api, "POST", "/api/audit-log", 400, {"action": "forms.deleted", "target_id": "x"})
    page = await call(api, "GET", "/api/audit-log", 200, params={"limit": "1"})
    assert len(page["entries"]) == 1
    assert page["next_before"] == page["entries"][0]["id"]
