"""The When part of the automation editor, built from the trigger models themselves.

Every member of shared.automations.Trigger becomes a kind the editor offers (so a new kind,
such as date_reached, appears without changing the console); each of its parameters becomes an
input chosen by its name and type: form fields, statuses, a choice, a number or text (text that
looks like JSON, e.g. a nested object, is read as JSON).
"""

import types
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

import orjson
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from services.casestore.console.render import FormData, rows, text
from shared.automation_rules import Trigger
from shared.bodies import parse_json
from shared.inputs import whole_number
from shared.web import BadRequest

LABELS = {
    "case_created": "A case is created",
    "case_changed": "A case changes in any way",
    "field_changed": "One of these fields is set, modified or removed",
    "field_filled": "One of these fields goes from empty to a value",
    "status_changed": "The status changes (to one of these, if any are chosen)",
    "date_reached": "The date in a field is reached",
    "lead_time_exceeded": "A case takes too long to reach a status",
}
STATUS_PARAMS = ("to", "until_status", "statuses")


@dataclass(frozen=True)
class Param:
    """One input of a trigger kind. `kind`: fields, field, statuses, choice, number, text."""

    name: str
    kind: str
    required: bool
    choices: tuple[str, ...] = ()
    field_types: tuple[str, ...] = ()  # for a `field`: the types it may be (all if empty)


@dataclass(frozen=True)
class TriggerKind:
    event: str
    label: str
    params: tuple[Param, ...]


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _param(name: str, info: FieldInfo) -> Param:
    annotation, required = info.annotation, info.is_required()
    inner = _strip_optional(annotation)
    if get_origin(inner) is list and get_args(inner) == (str,):
        return Param(name, "statuses" if name in STATUS_PARAMS else "fields", required)
    if get_origin(inner) is Literal:
        return Param(name, "choice", required, tuple(str(a) for a in get_args(inner)))
    if name == "field" and inner is str:
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        types = extra.get("field_types")
        return Param(name, "field", required,
                     field_types=tuple(str(t) for t in types) if isinstance(types, list)
                     else ())
    if inner is int:
        return Param(name, "number", required)
    return Param(name, "text", required)


def _kind(model: type[BaseModel]) -> TriggerKind:
    event = get_args(model.model_fields["event"].annotation)[0]
    params = tuple(_param(name, info) for name, info in model.model_fields.items()
                   if name != "event")
    return TriggerKind(event, LABELS.get(event, event.replace("_", " ").capitalize()), params)


KINDS = [_kind(model) for model in get_args(get_args(Trigger)[0])]
BY_EVENT = {k.event: k for k in KINDS}


@dataclass
class TriggerRow:
    """One When entry as the editor shows it; `use` says whether it is part of the automation."""

    event: str
    use: bool = False
    values: dict[str, Any] = field(default_factory=dict)  # str, or list[str] for many

    @property
    def kind(self) -> TriggerKind:
        return BY_EVENT[self.event]

    def value(self, name: str) -> Any:
        return self.values.get(name, "")

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"event": self.event}
        for param in self.kind.params:
            raw = self.values.get(param.name)
            if param.kind in ("fields", "statuses"):
                if raw or param.required:
                    body[param.name] = list(raw or [])
            elif raw or param.required:
                body[param.name] = _scalar(param, raw or "")
        return body


def _scalar(param: Param, raw: str) -> Any:
    if param.kind == "number":
        number = whole_number(raw, -(2**63), 2**63 - 1)
        return raw if number is None else number  # the model then says what is wrong
    if param.kind == "text" and raw[:1] in "{[":
        try:
            return parse_json(raw)
        except BadRequest:
            return raw
    return raw


def _shown(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "" if value is None else str(value)


def rows_of(when: list[dict[str, Any]]) -> list[TriggerRow]:
    """The entries in use, then one blank entry of every kind that can be added: a kind
    without parameters once only (a second "A case is created" would mean nothing more)."""
    rows = [TriggerRow(t["event"], True, {k: _shown(v) for k, v in t.items() if k != "event"})
            for t in when if t.get("event") in BY_EVENT]
    used = {row.event for row in rows}
    return rows + [TriggerRow(k.event) for k in KINDS if k.params or k.event not in used]


def read_rows(form: FormData) -> list[TriggerRow]:
    found = []
    for n in rows(form, "triggers", 200):
        event = text(form, f"when-{n}-event")
        if event not in BY_EVENT:
            continue
        values: dict[str, Any] = {}
        for param in BY_EVENT[event].params:
            key = f"when-{n}-{param.name}"
            values[param.name] = ([v for v in form.getall(key, []) if isinstance(v, str)]
                                  if param.kind in ("fields", "statuses") else text(form, key))
        found.append(TriggerRow(event, f"when-{n}-use" in form, values))
    return found
