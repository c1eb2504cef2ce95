"""What outgoing webhooks send, as JSON Schema: OpenAPI 3.1 `webhooks`, in general and for one
automation, from the models that make the payloads.

The metadata keys and their types are `CaseMetadata` (the values `shared.automations.META`
produces; a name on one and not the other fails at import); a field's value is described by
its form field's type (as `shared.forms.validate_case_data` keeps it); a constant is itself, a
template text, `returnDataURL` a URL. Per protocol: `json` the object, `json_array` the object
in a one-element array, `form` (and every GET, as its query) the same keys as
`application/x-www-form-urlencoded` text, a list as its key repeated (services/dispatcher/
request.py). tests/test_payload_schemas.py validates real sends against them.
"""

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from shared.automation_rules import TimeTrigger, Trigger
from shared.automations import META, AutomationDefinition, ContentItem
from shared.forms import FieldType, FormDefinition, FormField

TriggerName = Literal["date_reached", "lead_time_exceeded"]


class CaseMetadata(BaseModel):
    """Every metadata key content items and templates may name (`meta`), with its value."""

    case_id: uuid.UUID
    case_number: int
    status: str
    creator: str
    created_at: datetime
    updated_at: datetime
    form_id: str
    version: int
    trigger: TriggerName | None = Field(description="what fired a time-based trigger; null "
                                        "for a change")
    due_at: datetime | None = Field(description="when the time-based trigger was due")
    late_by: float | None = Field(description="seconds it fired after it was due")


if set(CaseMetadata.model_fields) != set(META):  # pragma: no cover (an import-time check)
    raise RuntimeError("CaseMetadata and shared.automations.META name different keys")

EVENTS: tuple[str, ...] = tuple(get_args(m.model_fields["event"].annotation)[0]
                                for m in get_args(get_args(Trigger)[0]))
TIME_EVENTS = tuple(get_args(m.model_fields["event"].annotation)[0]
                    for m in get_args(TimeTrigger))
NULLABLE_FOR_CHANGES = ("trigger", "due_at", "late_by")
URL = {"type": "string", "format": "uri"}
SIGNATURE_HEADERS = [
    {"name": "webhook-id", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "msg_ and the delivery id: the same on every attempt and replay"},
    {"name": "webhook-timestamp", "in": "header", "required": True,
     "schema": {"type": "string", "pattern": "^[0-9]+$"}, "description": "Unix seconds"},
    {"name": "webhook-signature", "in": "header", "required": True,
     "schema": {"type": "string"}, "description": "v1,<base64 HMAC-SHA256 of "
     "'{webhook-id}.{webhook-timestamp}.{payload}'>, space separated while a secret rotates"}]


def _metadata_schema(name: str, event: str) -> dict[str, Any]:
    if name in NULLABLE_FOR_CHANGES and event not in TIME_EVENTS:
        return {"type": "null"}
    if name == "trigger":
        return {"const": event}
    schema = CaseMetadata.model_json_schema()["properties"][name]
    options = schema.get("anyOf", [schema])
    typed = next(o for o in options if o.get("type") != "null")
    return {k: v for k, v in typed.items() if k != "title"}


def _field_schema(f: FormField) -> dict[str, Any]:
    by_type: dict[FieldType, dict[str, Any]] = {
        FieldType.EMAIL: {"type": "string", "format": "email"},
        FieldType.NUMBER: {"type": "number"},
        FieldType.DATE: {"type": "string", "format": "date"},
        FieldType.DATETIME: {"type": "string", "format": "date-time"},
        FieldType.SELECT: {"enum": f.options},
        FieldType.MULTISELECT: {"type": "array", "items": {"enum": f.options}},
        FieldType.CHECKBOX: {"type": "boolean"},
        FieldType.FILE: {"type": "array", "items": URL,
                         "description": "download URLs, valid 24 hours"},
    }
    schema = by_type.get(f.type, {"type": "string"})
    # Every field may be unset (null); a file field's list is then empty.
    return schema if f.type == FieldType.FILE else {"anyOf": [schema, {"type": "null"}]}


def _item_schema(item: ContentItem, form: FormDefinition, event: str) -> dict[str, Any]:
    if item.meta is not None:
        return _metadata_schema(item.meta, event)
    if item.field is not None:
        f = form.field(item.field)
        return _field_schema(f) if f is not None else {}
    if item.template is not None:
        return {"type": "string"}
    return {"const": item.value}


def _as_form_text(schema: dict[str, Any]) -> dict[str, Any]:
    """How a value reads once form-encoded: text, a list as its key repeated (absent when
    empty), null as the empty string."""
    kinds = [s.get("type") for s in schema.get("anyOf", [schema])]
    if "array" in kinds:
        return {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    return {"type": "string"}


def payload_schema(definition: AutomationDefinition, form: FormDefinition, event: str,
                   *, form_encoded: bool = False) -> dict[str, Any]:
    """The object one automation sends when `event` fires it (its keys, nothing else)."""
    properties = {item.key: _item_schema(item, form, event)
                  for item in definition.action.content}
    if definition.action.response:
        properties["returnDataURL"] = {**URL, "description": "POST the answer here within "
                                       "2 hours"}
    if form_encoded:
        properties = {k: _as_form_text(v) for k, v in properties.items()}
    required = [k for k, v in properties.items()
                if not (form_encoded and "anyOf" in v and len(v["anyOf"]) == 2)]
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def _operation(summary: str, body: dict[str, Any] | None,
               query: dict[str, Any] | None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary, "parameters": list(SIGNATURE_HEADERS),
        "responses": {"2XX": {"description": "received; a JSON body may carry response data"},
                      "default": {"description": "408, 429 and 5xx are retried, 410 disables "
                                  "the automation, any other answer is final"}}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    if query is not None:
        operation["parameters"] += [{"name": name, "in": "query", "required": name in
                                     query.get("required", []), "schema": schema}
                                    for name, schema in query["properties"].items()]
    return operation


def automation_webhooks(definition: AutomationDefinition,
                        form: FormDefinition) -> dict[str, Any]:
    """OpenAPI `webhooks` of one automation: per trigger it has, its method and protocol."""
    settings = definition.action.settings
    webhooks: dict[str, Any] = {}
    for event in dict.fromkeys(t.event for t in definition.when):
        summary = f"{definition.name}: fired by {event}"
        encoded = settings.method == "GET" or settings.protocol == "form"
        schema = payload_schema(definition, form, event, form_encoded=encoded)
        if settings.method == "GET":
            operation = _operation(summary, None, schema)
        elif settings.protocol == "form":
            operation = _operation(summary, {"application/x-www-form-urlencoded":
                                             {"schema": schema}}, None)
        else:
            wrapped = (schema if settings.protocol == "json" else
                       {"type": "array", "items": schema, "minItems": 1, "maxItems": 1})
            operation = _operation(summary, {"application/json": {"schema": wrapped}}, None)
        webhooks[event] = {settings.method.lower(): operation}
    return webhooks


GENERIC_PAYLOAD = {
    "type": "object", "additionalProperties": True,
    "properties": {"returnDataURL": {**URL, "description": "with response data configured: "
                                     "POST the answer here within 2 hours"}},
    "description": "The automation's content keys, each with a value of case metadata "
                   "(CaseMetadata), of a form field, a constant or a template's text. "
                   "GET /api/automations/{id}/openapi.json describes one automation's exact "
                   "payload."}


def generic_webhooks() -> dict[str, Any]:
    """OpenAPI `webhooks` of every automation: per trigger, each method and protocol."""
    json_body = {"application/json": {"schema": {"oneOf": [
        GENERIC_PAYLOAD, {"type": "array", "items": GENERIC_PAYLOAD, "minItems": 1,
                          "maxItems": 1}]}},
                 "application/x-www-form-urlencoded": {"schema": {
                     "type": "object", "additionalProperties": {"anyOf": [
                         {"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}}}
    webhooks: dict[str, Any] = {}
    for event in EVENTS:
        about = f"An automation fired by {event}"
        webhooks[event] = {
            "post": _operation(f"{about} (POST; protocol json, json_array or form)",
                               json_body, None),
            "put": _operation(f"{about} (PUT; protocol json, json_array or form)",
                              json_body, None),
            "get": _operation(f"{about} (GET: the content as query parameters)", None,
                              {"properties": {}, "required": []})}
    return webhooks


def metadata_component() -> dict[str, Any]:
    """CaseMetadata as a component schema, so a receiver can read every key and type."""
    return CaseMetadata.model_json_schema()
