"""The console signed in per account: username and password, who is signed in, what each role
may do there, an account disabled since signs the session out; and the audit-log page."""

import aiohttp
import pytest

from tests.console_helpers import form_fields, signed_in
from tests.helpers import call, new_account, unique
from tests.stack import Stack

pytestmark = pytest.mark.timeout(60)
PASSWORD = "correct horse battery staple"  # a test account's


async def test_an_account_signs_in_with_its_password_and_is_shown(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    username = await new_account(api, "editor", PASSWORD)
    async with signed_in(stack, username, PASSWORD) as console:
        home = await console.page("/console/")
    assert f"Signed in as <strong>{username}</strong> (editor)" in home
    async with signed_in(stack) as console:
        home = await console.page("/console/")
    assert "Signed in as <strong>admin-token</strong> (admin)" in home


async def test_a_wrong_password_or_unknown_name_is_refused_alike(
        stack: Stack, api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    username = await new_account(api, "viewer", PASSWORD)
    answers = []
    for name, password in ((username, "not the password"), (unique("nobody"), PASSWORD),
                           (username, stack.settings.admin_token)):
        async with http.post(stack.url("casestore") + "/console/sign-in", allow_redirects=False,
                             data={"username": name, "token": password}) as resp:
            answers.append((resp.status, "That is not the password of that account."
                            in await resp.text()))
    assert answers == [(401, True)] * 3


async def test_a_viewer_looks_but_changes_nothing(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    username = await new_account(api, "viewer", PASSWORD)
    form_id = unique("cv")
    async with signed_in(stack, username, PASSWORD) as console:
        await console.page("/console/forms")
        body, _ = await console.post("/console/forms/new", form_fields(form_id), status=403)
        assert "Your role (viewer) may look, not change this." in body
        await console.post("/console/sign-out", {})  # leaving is not a change
    await call(api, "GET", f"/api/forms/{form_id}", 404)


async def test_an_editor_changes_forms_and_the_change_is_on_the_audit_page(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    username = await new_account(api, "editor", PASSWORD)
    async with signed_in(stack, username, PASSWORD) as console:
        await call(api, "PATCH", f"/api/accounts/{username}", 200, {"role": "viewer"})
        body, _ = await console.post("/console/forms/new", form_fields(unique("cv")), status=403)
        assert "(viewer)" in body  # the role is read on every request, not kept in the cookie
        await call(api, "PATCH", f"/api/accounts/{username}", 200, {"role": "editor"})
        await call(api, "PATCH", f"/api/accounts/{username}", 200, {"disabled": True})
        await console.page("/console/forms", status=303)  # disabled: signed out at once


async def test_the_audit_log_page_lists_changes_filtered_by_actor_and_target(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    first = await new_account(api, "viewer", PASSWORD)
    second = await new_account(api, "viewer", PASSWORD)
    async with signed_in(stack, first, PASSWORD) as console:
        page = await console.page(f"/console/audit-log?target={second}")
        assert "account.created" in page
        assert f">{second}</a>" in page
        assert f">{first}</a>" not in page  # another target's row is not shown
        page = await console.page("/console/audit-log?actor=nobody-at-all")
        assert "No changes recorded for this filter." in page
        await console.page("/console/audit-log?before=99999999999999999999999", status=200)
