"""The seed's "Authenticate User": auth keys issued, required, and removed."""


import aiohttp

from tests.helpers import FormFactory, call, issue_key, make_user, post_with_key, wait_for_cases


async def test_auth_key_from_credentials_lets_the_user_create_cases(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    creds = await make_user(api, [hook["form_id"]])
    key = await issue_key(http, hook["url"], creds)
    assert len(key) >= 22
    assert await post_with_key(http, hook["url"], key) == (200, {})
    await wait_for_cases(api, hook["form_id"], 1)
    # The audit log says the key came from the user's own login, forwarded by ingest.
    entries = (await call(api, "GET", "/api/audit-log", 200,
                          params={"target": hook["form_id"]}))["entries"]
    issued = [e for e in entries if e["action"] == "incoming_webhook.auth_keys_issued"]
    assert [(e["diff"]["after"], e["via"]) for e in issued] == [
        ({"username": creds["username"]}, "admin token (ingest: a webhook user's login)")]


async def test_create_without_auth_key_is_access_deny(make_form: FormFactory,
                                                     http: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    status, body = await post_with_key(http, hook["url"], None)
    assert status == 400
    assert body["errors"][0]["code"] == "access_deny"


async def test_unknown_auth_key_is_access_deny(make_form: FormFactory,
                                               http: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    status, body = await post_with_key(http, hook["url"], "made-up-key")
    assert (status, body["errors"][0]["code"]) == (400, "access_deny")


async def test_wrong_password_gets_no_auth_key(make_form: FormFactory, http: aiohttp.ClientSession,
                                               api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    creds = await make_user(api, [hook["form_id"]])
    async with http.post(hook["url"], json={**creds, "password": "wrong password"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"][0]["code"] == "access_deny"


async def test_user_not_allowed_on_the_form_gets_access_deny(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    other = await make_form(authenticate_user=True)
    creds = await make_user(api, [other["form_id"]])
    async with http.post(hook["url"], json=creds) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"][0]["code"] == "access_deny"


async def test_key_for_one_webhook_does_not_open_another(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    first = await make_form(authenticate_user=True)
    second = await make_form(authenticate_user=True)
    creds = await make_user(api, [first["form_id"], second["form_id"]])
    key = await issue_key(http, first["url"], creds)
    status, body = await post_with_key(http, second["url"], key)
    assert (status, body["errors"][0]["code"]) == (400, "access_deny")


async def test_delete_with_credentials_removes_the_users_keys(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    creds = await make_user(api, [hook["form_id"]])
    keys = [await issue_key(http, hook["url"], creds) for _ in range(2)]
    async with http.delete(hook["url"], json=creds,
                           headers={"Content-type": "application/json"}) as resp:
        assert resp.status == 200
        assert await resp.json() == {}
    for key in keys:
        status, body = await post_with_key(http, hook["url"], key)
        assert (status, body["errors"][0]["code"]) == (400, "access_deny")


async def test_delete_with_wrong_password_keeps_the_keys(
        make_form: FormFactory, http: aiohttp.ClientSession, api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    creds = await make_user(api, [hook["form_id"]])
    key = await issue_key(http, hook["url"], creds)
    async with http.delete(hook["url"], json={**creds, "password": "nope nope"}) as resp:
        assert resp.status == 400
    assert await post_with_key(http, hook["url"], key) == (200, {})


async def test_deleted_user_loses_access(make_form: FormFactory, http: aiohttp.ClientSession,
                                         api: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    creds = await make_user(api, [hook["form_id"]])
    key = await issue_key(http, hook["url"], creds)
    async with api.delete(f"/api/users/{creds['username']}") as resp:
        assert resp.status == 200
    status, body = await post_with_key(http, hook["url"], key)
    assert (status, body["errors"][0]["code"]) == (400, "access_deny")


async def test_credentials_body_on_a_webhook_without_authentication_is_case_data(
        make_form: FormFactory, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    async with http.post(hook["url"], json={"username": "u", "password": "p"}) as resp:
        assert resp.status == 400
        codes = {(e["field"], e["code"]) for e in (await resp.json())["errors"]}
    assert ("username", "unknown_field") in codes
