"""The OpenAPI `webhooks` describe what receivers really get: real sends of every protocol and
method, fired by a change, a status and a time-based trigger, validate against the
automation's own description and the general one in /api/openapi.json."""

from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from jsonschema import Draft202012Validator, FormatChecker, ValidationError

from shared.payloads import EVENTS
from tests.helpers import FormFactory, call, new_case, patch_case, upload
from tests.receiver import Received, Receiver

CONTENT = [
    {"key": "number", "meta": "case_number"}, {"key": "id", "meta": "case_id"},
    {"key": "created", "meta": "created_at"}, {"key": "status", "meta": "status"},
    {"key": "trigger", "meta": "trigger"}, {"key": "due", "meta": "due_at"},
    {"key": "late", "meta": "late_by"}, {"key": "text", "field": "text-field"},
    {"key": "amount", "field": "amount"}, {"key": "tags", "field": "tags"},
    {"key": "urgent", "field": "urgent"}, {"key": "due-date", "field": "due-date"},
    {"key": "priority", "field": "priority"}, {"key": "email", "field": "email"},
    {"key": "files", "field": "attachment"}, {"key": "source", "value": {"system": "cw"}},
    {"key": "title", "template": "Case #{case_number}: {field:text-field}"}]
WHEN = [{"event": "case_created"}, {"event": "status_changed", "to": ["closed"]},
        {"event": "lead_time_exceeded", "duration": "PT1S", "until_status": ["in_progress"]}]


def parsed(seen: Received, method: str, protocol: str) -> Any:
    """The payload as a receiver reads it: JSON, or form/query pairs (a repeated key a list)."""
    if method != "GET" and protocol != "form":
        return seen.json()
    text = seen.query_string if method == "GET" else seen.body.decode()
    values: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        values[key] = [*values[key], value] if isinstance(values.get(key), list) else (
            [values[key], value] if key in values else value)
    return values


def body_schema(operation: dict[str, Any], method: str, protocol: str) -> dict[str, Any]:
    if method == "GET":
        return {"type": "object", "properties": {
            p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"},
            "required": [p["name"] for p in operation["parameters"]
                         if p["in"] == "query" and p["required"]],
            "additionalProperties": False}
    media = "application/x-www-form-urlencoded" if protocol == "form" else "application/json"
    schema: dict[str, Any] = operation["requestBody"]["content"][media]["schema"]
    return schema


def validate(payload: Any, schema: dict[str, Any], components: dict[str, Any]) -> None:
    Draft202012Validator({**schema, "components": components},
                         format_checker=FormatChecker()).validate(payload)


@pytest.mark.parametrize(("method", "protocol"), [
    ("POST", "json"), ("PUT", "json_array"), ("POST", "form"), ("GET", "json")])
async def test_real_sends_of_every_trigger_kind_validate_against_the_described_webhooks(
        method: str, protocol: str, make_form: FormFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook, url = await make_form(), receiver.endpoint()
    automation = await call(api, "POST", f"/api/forms/{hook['form_id']}/automations", 201, {
        "name": f"schema {method} {protocol}", "when": WHEN,
        "action": {"type": "outgoing_webhook", "content": CONTENT,
                   "settings": {"method": method, "url": url, "protocol": protocol},
                   "response": [{"field": "notes", "key": "note"}]}})
    case = await new_case(api, hook["form_id"], {
        "text-field": "Printer", "amount": 12.5, "tags": ["a", "c"], "urgent": True,
        "due-date": "2026-12-24", "priority": "high"})
    await receiver.wait_for(url, 2)  # created; then, a second on, the lead time exceeded
    await upload(api, case["id"])
    await patch_case(api, case["id"], status="closed")
    seen = await receiver.wait_for(url, 3)
    own = await call(api, "GET", f"/api/automations/{automation['id']}/openapi.json", 200)
    general = await call(api, "GET", "/api/openapi.json", 200)
    events = []
    for request in seen:
        payload = parsed(request, method, protocol)
        one = payload[0] if protocol == "json_array" and method != "GET" else payload
        event = {"lead_time_exceeded": "lead_time_exceeded"}.get(
            one.get("trigger") or "", "status_changed" if one["status"] == "closed"
            else "case_created")
        events.append(event)
        operation = own["webhooks"][event][method.lower()]
        assert [p["name"] for p in operation["parameters"][:3]] == [
            "webhook-id", "webhook-timestamp", "webhook-signature"]
        assert {h.lower() for h in request.headers} >= {"webhook-id", "webhook-signature"}
        schema = body_schema(operation, method, protocol)
        validate(payload, schema, own["components"])
        generic = general["webhooks"][event][method.lower()]
        if method != "GET":
            validate(payload, body_schema(generic, method, protocol), general["components"])
        with pytest.raises(ValidationError):  # the description is exact: no key more
            validate({**one, "extra": 1} if one is payload else [{**one, "extra": 1}], schema,
                     own["components"])
    assert sorted(events) == ["case_created", "lead_time_exceeded", "status_changed"]


async def test_the_general_description_has_a_webhook_per_trigger_and_the_metadata(
        api: aiohttp.ClientSession) -> None:
    document = await call(api, "GET", "/api/openapi.json", 200)
    assert document["openapi"] == "3.1.0"
    assert set(document["webhooks"]) == set(EVENTS)
    for item in document["webhooks"].values():
        assert set(item) == {"post", "put", "get"}
        assert set(item["post"]["requestBody"]["content"]) == {
            "application/json", "application/x-www-form-urlencoded"}
    metadata = document["components"]["schemas"]["CaseMetadata"]["properties"]
    assert {"case_number", "creator", "trigger", "due_at", "late_by"} <= set(metadata)
