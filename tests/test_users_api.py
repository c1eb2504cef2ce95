"""Changing a user (forms, password) takes effect at once; NUL anywhere is a 4xx, never a 500."""

import uuid
from typing import Any

import aiohttp
import pytest

from tests.helpers import CREDS, FormFactory, call, issue_key, make_user, new_form, post_with_key


async def put_user(api: aiohttp.ClientSession, username: str, body: dict[str, Any],
                   status: int = 200) -> Any:
    return await call(api, "PUT", f"/api/users/{username}", status, body)


# PUT /api/users/{username}

async def test_removing_a_form_stops_the_users_key_at_once_and_adding_it_back_restores_it(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    other = await new_form(api)
    creds = await make_user(api, [hook["form_id"], other])
    key = await issue_key(http, hook["url"], creds)
    assert await post_with_key(http, hook["url"], key) == (200, {})
    assert await put_user(api, creds["username"], {"forms": [other]}) == {
        "username": creds["username"], "forms": [other]}
    status, body = await post_with_key(http, hook["url"], key)
    assert (status, body["errors"][0]["code"]) == (400, "access_deny")
    await put_user(api, creds["username"], {"forms": [hook["form_id"], other]})
    assert await post_with_key(http, hook["url"], key) == (200, {})
    [listed] = [u for u in (await call(api, "GET", "/api/users", 200))["users"]
                if u["username"] == creds["username"]]
    assert listed["forms"] == sorted([hook["form_id"], other])


async def test_a_new_password_replaces_the_old_and_revokes_issued_keys(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    creds = await make_user(api, [hook["form_id"]])
    key = await issue_key(http, hook["url"], creds)
    new_password = f"new-{uuid.uuid4().hex}"
    await put_user(api, creds["username"], {"password": new_password, "forms": [hook["form_id"]]})
    status, body = await post_with_key(http, hook["url"], key)
    assert (status, body["errors"][0]["code"]) == (400, "access_deny")
    async with http.post(hook["url"], json=creds) as resp:
        assert resp.status == 400
    fresh = await issue_key(http, hook["url"], {**creds, "password": new_password})
    assert await post_with_key(http, hook["url"], fresh) == (200, {})


async def test_put_of_an_unknown_user_is_404_and_bad_bodies_are_400(
        api: aiohttp.ClientSession) -> None:
    await put_user(api, f"nobody-{uuid.uuid4().hex[:8]}", {"forms": []}, 404)
    creds = await make_user(api, [])
    for body, field in (({"forms": ["no-such-form"]}, "forms"),
                        ({"forms": [], "password": "short"}, "password"),
                        ({"password": "long-enough-pw"}, "forms"),
                        ({"forms": ["a\u0000b"]}, "forms[0]")):
        errors = (await put_user(api, creds["username"], body, 400))["errors"]
        assert [e["field"] for e in errors] == [field]


# NUL (U+0000): Postgres cannot store it; every route must answer 4xx instead of crashing.

async def test_nul_in_a_username_asking_for_an_auth_key_is_access_deny(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    await make_user(api, [hook["form_id"]])
    for method in ("POST", "DELETE"):
        async with http.request(method, hook["url"],
                                json={"username": "a\u0000b", **CREDS}) as resp:
            assert resp.status == 400, await resp.text()
            assert (await resp.json())["errors"][0]["code"] == "access_deny"


async def test_nul_in_a_users_forms_is_400(api: aiohttp.ClientSession) -> None:
    body = {"username": f"user-{uuid.uuid4().hex[:8]}", "password": "long-enough",
            "forms": ["a\u0000b"]}
    errors = (await call(api, "POST", "/api/users", 400, body))["errors"]
    assert [e["field"] for e in errors] == ["forms[0]"]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/forms/a%00b"), ("GET", "/api/forms/a%00b/cases"),
    ("DELETE", "/api/users/a%00b"), ("PUT", "/api/users/a%00b"),
    ("GET", "/api/forms/a%00b/incoming-webhook"), ("GET", "/files/a%00b"),
])
async def test_nul_in_a_path_is_404(method: str, path: str, api: aiohttp.ClientSession) -> None:
    async with api.request(method, path, json={"forms": []}) as resp:
        assert resp.status == 404, await resp.text()
        assert (await resp.json())["errors"][0]["code"] == "not_found"


async def test_nul_in_a_query_is_400_naming_the_parameter(api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    for path, name in ((f"/api/forms/{form_id}/cases?status=a%00b", "status"),
                       ("/api/deliveries?state=a%00b", "state")):
        async with api.get(path) as resp:
            assert resp.status == 400, await resp.text()
            assert (await resp.json())["errors"][0]["field"] == name
