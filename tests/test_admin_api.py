"""The admin REST API of casestore: auth, forms, incoming-webhook admin, users and cases."""

import re
import shlex
import uuid
from typing import Any

import aiohttp
import orjson
import pytest

from tests.helpers import (
    AutomationFactory,
    EventTap,
    FormFactory,
    call,
    full_form,
    new_case,
    new_form,
    until,
    wait_for_cases,
    webhook_action,
)
from tests.receiver import Receiver, Reply
from tests.stack import Stack

TEXT_A = {"id": "a", "label": "A", "type": "text"}
VALID = {"text-field": "x"}


async def list_cases(api: aiohttp.ClientSession, form_id: str, **params: str) -> Any:
    return await call(api, "GET", f"/api/forms/{form_id}/cases", 200, params=params)


async def post_until(http: aiohttp.ClientSession, url: str, body: Any, status: int,
                     within: float = 5.0) -> None:
    """Post until the answer has `status` (ingest follows form.changed asynchronously)."""

    async def answered() -> bool:
        async with http.post(url, json=body) as resp:
            return resp.status == status

    await until(answered, within, f"{url} never answered {status}")


# Authentication

PROTECTED = [("GET", "/api/forms"), ("POST", "/api/forms"), ("GET", "/api/users"),
             ("GET", f"/api/cases/{uuid.uuid4()}")]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("authorization", [
    None, "Bearer wrong-token", "Bearer ", "Basic {token}", "Bearer {token}x", "{token}"])
async def test_request_without_or_with_wrong_bearer_token_is_401(
        method: str, path: str, authorization: str | None, stack: Stack,
        http: aiohttp.ClientSession) -> None:
    token = stack.settings.admin_token
    headers = {"Authorization": authorization.format(token=token)} if authorization else {}
    async with http.request(method, stack.url("casestore") + path, headers=headers,
                            json=full_form()) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert (await resp.json())["errors"][0]["code"] == "unauthorized"


async def test_healthz_needs_no_token(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(stack.url("casestore") + "/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


# Form validation

BAD_FORMS = {
    "duplicate_field_ids": ({"fields": [TEXT_A, TEXT_A]}, None, "must be unique in a form: a"),
    "unknown_field_type": ({"fields": [{**TEXT_A, "type": "colour"}]}, "fields[0].type", "'text'"),
    "select_without_options": ({"fields": [{**TEXT_A, "type": "select"}]}, "fields[0]",
                               "field 'a': type select needs a list of options"),
    "options_on_text_field": ({"fields": [{**TEXT_A, "options": ["x"]}]}, "fields[0]",
                              "field 'a': options are only allowed on select"),
    "section_out_of_range": ({"fields": [{**TEXT_A, "section": 5}]}, None,
                             "field 'a': section 5 does not exist"),
    "negative_section": ({"fields": [{**TEXT_A, "section": -1}]}, "fields[0].section",
                         "greater than or equal to 0"),
    "empty_statuses": ({"statuses": []}, "statuses", "at least 1 item"),
    "duplicate_statuses": ({"statuses": ["open", "open"]}, "statuses", "must be unique"),
    "bad_slug_id": ({"id": "Bad Id!"}, "id", "should match pattern"),
    "unknown_key": ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
}


@pytest.mark.parametrize(("overrides", "field", "message"), BAD_FORMS.values(), ids=BAD_FORMS)
async def test_invalid_form_is_400_naming_the_problem(
        overrides: dict[str, Any], field: str | None, message: str,
        api: aiohttp.ClientSession) -> None:
    body = full_form(**overrides)
    errors = (await call(api, "POST", "/api/forms", 400, body))["errors"]
    assert any(e["field"] == field and message in e["message"] and e["code"] == "invalid"
               for e in errors), errors
    await call(api, "GET", f"/api/forms/{body['id']}", 404)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff"])
async def test_form_body_that_is_not_json_is_400_invalid_json(
        raw: bytes, api: aiohttp.ClientSession) -> None:
    body = await call(api, "POST", "/api/forms", 400, data=raw,
                      headers={"Content-Type": "application/json"})
    assert body["errors"][0]["code"] == "invalid_json"
    assert body["errors"][0]["message"].startswith("body is not valid JSON")


async def test_creating_the_same_form_id_twice_is_409(api: aiohttp.ClientSession) -> None:
    body = full_form()
    await call(api, "POST", "/api/forms", 201, body)
    errors = (await call(api, "POST", "/api/forms", 409, {**body, "name": "Other"}))["errors"]
    assert (errors[0]["code"], body["id"] in errors[0]["message"]) == ("conflict", True)
    assert (await call(api, "GET", f"/api/forms/{body['id']}", 200))["name"] == body["name"]


# Form CRUD

async def test_created_form_is_echoed_listed_and_readable(api: aiohttp.ClientSession) -> None:
    body = full_form()
    assert await call(api, "POST", "/api/forms", 201, body) == body
    listed = (await call(api, "GET", "/api/forms", 200))["forms"]
    assert [f for f in listed if f["id"] == body["id"]] == [body]
    assert await call(api, "GET", f"/api/forms/{body['id']}", 200) == body


async def test_put_replaces_the_form(api: aiohttp.ClientSession) -> None:
    body = full_form()
    await call(api, "POST", "/api/forms", 201, body)
    extra = {"id": "extra", "label": "Extra", "type": "number", "mandatory": False,
             "section": 1, "options": None}
    changed = {**body, "name": "Renamed", "fields": [*body["fields"], extra]}
    assert await call(api, "PUT", f"/api/forms/{body['id']}", 200, changed) == changed
    assert await call(api, "GET", f"/api/forms/{body['id']}", 200) == changed


async def test_put_with_a_different_body_id_is_400(api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    other = full_form()
    errors = (await call(api, "PUT", f"/api/forms/{form_id}", 400, other))["errors"]
    assert (errors[0]["field"], "must match the URL" in errors[0]["message"]) == ("id", True)
    await call(api, "GET", f"/api/forms/{other['id']}", 404)


async def test_deleted_form_is_gone(api: aiohttp.ClientSession) -> None:
    body = full_form()
    form_id = body["id"]
    await call(api, "POST", "/api/forms", 201, body)
    assert await call(api, "DELETE", f"/api/forms/{form_id}", 200) == {}
    await call(api, "PUT", f"/api/forms/{form_id}", 404, body)
    await call(api, "GET", f"/api/forms/{form_id}", 404)
    await call(api, "GET", f"/api/forms/{form_id}/cases", 404)
    await call(api, "DELETE", f"/api/forms/{form_id}", 404)
    await call(api, "PUT", f"/api/forms/{form_id}/incoming-webhook", 404, {"enabled": True})
    await call(api, "POST", f"/api/forms/{form_id}/incoming-webhook/rotate", 404)


async def test_form_with_cases_cannot_be_deleted(api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    case = await new_case(api, form_id)
    errors = (await call(api, "DELETE", f"/api/forms/{form_id}", 409))["errors"]
    assert "still has 1 case" in errors[0]["message"]
    await call(api, "DELETE", f"/api/cases/{case['id']}", 200)
    assert await call(api, "DELETE", f"/api/forms/{form_id}", 200) == {}


async def test_a_form_is_deleted_with_its_cases_only_when_asked_to(
        api: aiohttp.ClientSession, make_automation: AutomationFactory,
        receiver: Receiver) -> None:
    form_id = await new_form(api)
    url = receiver.endpoint(Reply(status=503))
    automation = await make_automation(form_id, url, action=webhook_action(
        url, retry="extended"))  # its second attempt waits 5 s
    case = await new_case(api, form_id)

    async def retrying() -> Any:
        return (await call(api, "GET", "/api/deliveries", 200, params={
            "case": case["id"], "state": "retrying"}))["deliveries"]

    await until(retrying, failure="the first attempt never failed")
    await call(api, "DELETE", f"/api/forms/{form_id}", 400, params={"with_cases": "yes"})
    await call(api, "DELETE", f"/api/forms/{form_id}", 409, params={"with_cases": "false"})
    assert await call(api, "DELETE", f"/api/forms/{form_id}", 200,
                      params={"with_cases": "true"}) == {}
    await call(api, "GET", f"/api/forms/{form_id}", 404)
    await call(api, "GET", f"/api/cases/{case['id']}", 404)
    await call(api, "GET", f"/api/automations/{automation['id']}", 404)
    [delivery] = (await call(api, "GET", "/api/deliveries", 200,
                             params={"case": case["id"]}))["deliveries"]
    assert delivery["state"] == "failed"  # the log stays; nothing waits to be sent


async def test_form_changes_publish_form_changed_events(api: aiohttp.ClientSession,
                                                        events: EventTap) -> None:
    body = full_form()
    await call(api, "POST", "/api/forms", 201, body)
    await call(api, "PUT", f"/api/forms/{body['id']}", 200, {**body, "name": "Renamed"})
    await call(api, "DELETE", f"/api/forms/{body['id']}", 200)
    for change in ("created", "updated", "deleted"):
        event = await events.next(lambda e: e["type"] == "form.changed"
                                  and e["form_id"] == body["id"])
        assert event["data"] == {"form_id": body["id"], "change": change}


# Form structure

async def test_structure_lists_fields_and_the_webhook_url(
        make_form: FormFactory, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    form = await call(api, "GET", f"/api/forms/{hook['form_id']}", 200)
    structure = await call(api, "GET", f"/api/forms/{hook['form_id']}/structure", 200)
    keys = ("id", "label", "type", "section", "mandatory", "options")
    assert [{k: f[k] for k in keys} for f in structure["fields"]] == form["fields"]
    assert structure["statuses"] == form["statuses"]
    assert structure["incoming_webhook_url"] == hook["url"]
    curl = structure["send_directly_as_json"]
    assert curl.startswith("curl -X POST")
    assert hook["url"] in curl
    assert "text-field" in curl


MANDATORY_MIX = [
    {"id": "when", "label": "When", "type": "date", "mandatory": True},
    {"id": "kind", "label": "Kind", "type": "select", "mandatory": True, "options": ["a", "b"]},
    {"id": "count", "label": "Count", "type": "number", "mandatory": True},
    {"id": "note", "label": "Note", "type": "text"},
    {"id": "later", "label": "Later", "type": "text", "mandatory": True, "section": 1},
]


@pytest.mark.parametrize(("fields", "sent"), [
    (None, ["text-field"]),
    (MANDATORY_MIX, ["when", "kind", "count"]),
], ids=["optional_text_field", "every_mandatory_first_section_field"])
async def test_structure_curl_example_creates_a_case(
        fields: list[dict[str, Any]] | None, sent: list[str],
        make_form: FormFactory, api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    extra = {} if fields is None else {
        "fields": fields, "sections": [{"name": "Request"}, {"name": "Handling"}]}
    hook = await make_form(**extra)
    structure = await call(api, "GET", f"/api/forms/{hook['form_id']}/structure", 200)
    argv = shlex.split(structure["send_directly_as_json"].replace("\\\n", " "))
    assert [*argv[:3], argv[-1]] == ["curl", "-X", "POST", hook["url"]]
    data = argv[argv.index("--data") + 1]
    assert list(orjson.loads(data)) == sent
    async with http.post(argv[-1], data=data,
                         headers={"Content-type": "application/json"}) as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {}
    [case] = await wait_for_cases(api, hook["form_id"], 1)
    assert case["data"] == orjson.loads(data)


# Incoming webhook admin

async def test_put_incoming_webhook_returns_url_and_a_long_url_safe_token(
        stack: Stack, api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    path = f"/api/forms/{form_id}/incoming-webhook"
    await call(api, "GET", path, 404)
    hook = await call(api, "PUT", path, 200, {"enabled": True, "authenticate_user": True})
    assert set(hook) == {"url", "token", "enabled", "authenticate_user", "verify"}
    assert hook["verify"] is None
    assert (hook["enabled"], hook["authenticate_user"]) == (True, True)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", hook["token"])
    assert hook["url"] == f"{stack.settings.public_base_url}/hooks/{hook['token']}"
    again = await call(api, "PUT", path, 200, {"enabled": True, "authenticate_user": False})
    assert again == {**hook, "authenticate_user": False}
    assert await call(api, "GET", path, 200) == again


async def test_disabled_webhook_url_is_404_and_reenabled_works_again(
        make_form: FormFactory, api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    path = f"/api/forms/{hook['form_id']}/incoming-webhook"
    await post_until(http, hook["url"], {}, 400)  # enabled: a validation error, no case
    disabled = await call(api, "PUT", path, 200, {"enabled": False})
    assert (disabled["enabled"], disabled["url"]) == (False, hook["url"])
    await post_until(http, hook["url"], {}, 404)
    await call(api, "PUT", path, 200, {"enabled": True})
    await post_until(http, hook["url"], {}, 400)


async def test_rotate_gives_a_new_token_and_retires_the_old_url(
        make_form: FormFactory, api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    await post_until(http, hook["url"], VALID, 200)
    rotated = await call(api, "POST", f"/api/forms/{hook['form_id']}/incoming-webhook/rotate", 200)
    assert rotated["token"] != hook["token"]
    assert rotated["url"] == hook["url"].replace(hook["token"], rotated["token"])
    await post_until(http, hook["url"], {}, 404)  # {} is a 400 while the URL lives: no case
    await post_until(http, rotated["url"], VALID, 200)
    await wait_for_cases(api, hook["form_id"], 2)


# Users

async def test_user_lifecycle_never_shows_the_password(api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    username, password = f"user-{uuid.uuid4().hex[:8]}", f"secret-{uuid.uuid4().hex}"
    user = {"username": username, "password": password, "forms": [form_id, form_id]}
    created = await call(api, "POST", "/api/users", 201, user)
    assert created == {"username": username, "forms": [form_id]}
    await call(api, "POST", "/api/users", 409, {**user, "password": "another-one"})
    async with api.get("/api/users") as resp:
        text = await resp.text()
    assert password not in text
    assert "$argon2" not in text
    [listed] = [u for u in orjson.loads(text)["users"] if u["username"] == username]
    assert listed["forms"] == [form_id]
    assert not [k for k in listed if "password" in k or "hash" in k]
    assert await call(api, "DELETE", f"/api/users/{username}", 200) == {}
    await call(api, "DELETE", f"/api/users/{username}", 404)


@pytest.mark.parametrize(("body", "field"), [
    ({"password": "long-enough", "forms": ["no-such-form"]}, "forms"),
    ({"password": "short"}, "password"),
    ({"password": "long-enough", "role": "admin"}, "role"),
])
async def test_invalid_user_is_400(body: dict[str, Any], field: str,
                                   api: aiohttp.ClientSession) -> None:
    username = f"user-{uuid.uuid4().hex[:8]}"
    errors = (await call(api, "POST", "/api/users", 400, {"username": username, **body}))
    assert [e["field"] for e in errors["errors"]] == [field]
    users = (await call(api, "GET", "/api/users", 200))["users"]
    assert username not in [u["username"] for u in users]


# Cases

async def test_admin_case_is_created_registered_at_version_1(api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    case = await new_case(api, form_id, {"text-field": "hello", "amount": "12"})
    assert (case["case_number"], case["status"], case["version"], case["creator"]) == (
        1, "registered", 1, "Admin API")
    assert case["data"] == {"text-field": "hello", "amount": 12}
    stored = await call(api, "GET", f"/api/cases/{case['id']}", 200)
    assert stored["history"][0]["changes"] == [
        {"field": "text-field", "old": None, "new": "hello"},
        {"field": "amount", "old": None, "new": 12}]


@pytest.mark.parametrize(("data", "field", "code"), [
    ({**VALID, "due-date": "2026-02-30"}, "due-date", "wrong_date"),
    ({**VALID, "amount": "twelve"}, "amount", "value_not_numeric"),
    ({"amount": 1}, "text-field", "field_required"),
    ({"text-field": ""}, "text-field", "value_missing"),
    ({**VALID, "priority": "medium"}, "priority", "value_not_allowed"),
    ({**VALID, "bogus": 1}, "bogus", "unknown_field"),
])
async def test_invalid_case_data_is_400_with_the_seed_code(
        data: dict[str, Any], field: str, code: str, api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    errors = (await call(api, "POST", f"/api/forms/{form_id}/cases", 400, {"data": data}))
    assert [(e["field"], e["code"]) for e in errors["errors"]] == [(field, code)]
    assert (await list_cases(api, form_id))["total"] == 0


async def test_unknown_status_is_400(api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    body = {"data": VALID, "status": "bogus"}
    errors = (await call(api, "POST", f"/api/forms/{form_id}/cases", 400, body))["errors"]
    assert (errors[0]["field"], errors[0]["code"]) == ("status", "value_not_allowed")
    case = await new_case(api, form_id)
    await call(api, "PATCH", f"/api/cases/{case['id']}", 400, {"status": "bogus"})


async def test_patch_changes_field_and_status_and_records_history(
        api: aiohttp.ClientSession, events: EventTap) -> None:
    case = await new_case(api, await new_form(api), {"text-field": "a"})
    patch = {"data": {"text-field": "b", "notes": "n"}, "status": "in_progress"}
    patched = await call(api, "PATCH", f"/api/cases/{case['id']}", 200, patch)
    assert (patched["version"], patched["status"]) == (2, "in_progress")
    assert patched["data"] == {"text-field": "b", "notes": "n"}
    changes = [{"field": "notes", "old": None, "new": "n"},
               {"field": "text-field", "old": "a", "new": "b"},
               {"field": "status", "old": "registered", "new": "in_progress"}]
    stored = await call(api, "GET", f"/api/cases/{case['id']}", 200)
    assert [h["version"] for h in stored["history"]] == [1, 2]
    assert stored["history"][1]["changes"] == changes
    assert stored["history"][1]["author"] == "Admin API"
    event = await events.next(lambda e: e["type"] == "case.updated"
                              and e["case_id"] == case["id"])
    assert event["data"]["changes"] == changes
    assert event["data"]["previous_status"] == "registered"
    assert event["data"]["version"] == 2


async def test_patch_that_changes_nothing_keeps_the_version(api: aiohttp.ClientSession) -> None:
    case = await new_case(api, await new_form(api), {"text-field": "same"})
    patch = {"data": {"text-field": "same"}, "status": "registered"}
    unchanged = await call(api, "PATCH", f"/api/cases/{case['id']}", 200, patch)
    assert (unchanged["version"], unchanged["updated_at"]) == (1, case["updated_at"])
    assert len((await call(api, "GET", f"/api/cases/{case['id']}", 200))["history"]) == 1


async def test_deleted_case_is_gone_and_announced(api: aiohttp.ClientSession,
                                                  events: EventTap) -> None:
    case = await new_case(api, await new_form(api))
    assert await call(api, "DELETE", f"/api/cases/{case['id']}", 200) == {}
    await call(api, "GET", f"/api/cases/{case['id']}", 404)
    await call(api, "DELETE", f"/api/cases/{case['id']}", 404)
    event = await events.next(lambda e: e["type"] == "case.deleted"
                              and e["case_id"] == case["id"])
    assert event["data"]["case_number"] == case["case_number"]


@pytest.mark.parametrize("case_id", ["not-a-uuid", str(uuid.uuid4())])
async def test_unknown_case_id_is_404(case_id: str, api: aiohttp.ClientSession) -> None:
    await call(api, "GET", f"/api/cases/{case_id}", 404)
    await call(api, "PATCH", f"/api/cases/{case_id}", 404, {"status": "closed"})


# Listing

async def test_cases_are_listed_newest_first_and_paged_without_repeats(
        api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    for i in range(5):
        await new_case(api, form_id, {"text-field": f"case {i}"})
    page = await list_cases(api, form_id)
    assert [c["case_number"] for c in page["cases"]] == [5, 4, 3, 2, 1]
    assert page["next_before"] is None
    seen: list[int] = []
    params = {"limit": "2"}
    for _ in range(5):
        page = await list_cases(api, form_id, **params)
        assert page["total"] == 5
        assert len(page["cases"]) <= 2
        seen += [c["case_number"] for c in page["cases"]]
        if page["next_before"] is None:
            break
        params["before"] = str(page["next_before"])
    assert seen == [5, 4, 3, 2, 1]


async def test_status_filter_lists_only_that_status(api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    cases = [await new_case(api, form_id) for _ in range(4)]
    for case in cases[1::2]:
        await call(api, "PATCH", f"/api/cases/{case['id']}", 200, {"status": "closed"})
    closed = await list_cases(api, form_id, status="closed")
    assert closed["total"] == 2
    assert [c["case_number"] for c in closed["cases"]] == [4, 2]
    assert (await list_cases(api, form_id, status="registered"))["total"] == 2
    assert (await list_cases(api, form_id, status="nope"))["total"] == 0


@pytest.mark.parametrize(("name", "value"), [
    ("limit", "0"), ("limit", "abc"), ("limit", "501"), ("limit", "-1"), ("before", "x"),
    ("limit", "\u00b2"),  # str.isdigit() says yes, int() says no
])
async def test_bad_paging_parameter_is_400(name: str, value: str,
                                           api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    async with api.get(f"/api/forms/{form_id}/cases", params={name: value}) as resp:
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["errors"][0]["field"] == name


async def test_case_numbers_restart_per_form(api: aiohttp.ClientSession) -> None:
    first, second = await new_form(api), await new_form(api)
    assert (await new_case(api, first))["case_number"] == 1
    assert (await new_case(api, second))["case_number"] == 1
    assert (await new_case(api, first))["case_number"] == 2


# Values Postgres or the JSON encoder cannot store must be refused, never crash the request.

@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/forms", full_form(name="a\u0000b"), "name"),
    ("/api/users", {"username": "nul\u0000user", "password": "long-enough"}, "username"),
    ("/api/forms/{form}/cases", {"data": {"text-field": "a\u0000b"}}, "text-field"),
    ("/api/forms/{form}/cases", {"data": {**VALID, "amount": "1" + "0" * 30}}, "amount"),
], ids=["nul_in_form_name", "nul_in_username", "nul_in_case_text", "integer_beyond_64_bits"])
async def test_unstorable_value_is_refused_not_500(path: str, body: dict[str, Any], field: str,
                                                   api: aiohttp.ClientSession) -> None:
    async with api.post(path.format(form=await new_form(api)), json=body) as resp:
        assert resp.status == 400, await resp.text()
        assert field in {e["field"] for e in (await resp.json())["errors"]}


@pytest.mark.parametrize(("sent", "stored"), [
    ("1e300", 1e300), ("12345678901234567", 12345678901234567), (" 42 ", 42), ("-7", -7),
    ("2.5", 2.5), (3, 3),
])
async def test_numbers_are_stored_exactly(sent: object, stored: object,
                                          api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    case = await call(api, "POST", f"/api/forms/{form_id}/cases", 201,
                      {"data": {**VALID, "amount": sent}})
    assert case["data"]["amount"] == stored
    assert type(case["data"]["amount"]) is type(stored)
