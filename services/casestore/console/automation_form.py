"""The automation editor's HTML form: When, If, content, settings and response data.

Read into the API's body (the same parse and checks as POST /api/forms/{id}/automations),
and shown again with every problem next to the part it concerns.
"""

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.casestore.console import triggers
from services.casestore.console.render import Errors, FormData, indexed, place, rows, text
from services.casestore.repo.automations import MASK
from shared.forms import FieldError

SOURCES = ("field", "meta", "value", "template")
BLANK_ROWS = 2
SETTINGS_PART = re.compile(r"^action\.settings\.(\w+)")


@dataclass
class ContentRow:
    key: str = ""
    source: str = "field"
    value: str = ""
    remove: bool = False

    def to_api(self) -> dict[str, Any]:
        if self.source != "value":
            return {"key": self.key, self.source: self.value}
        try:
            return {"key": self.key, "value": orjson.loads(self.value)}
        except orjson.JSONDecodeError:
            return {"key": self.key, "value": self.value}


@dataclass
class ResponseRow:
    field: str = ""
    key: str = ""
    remove: bool = False


@dataclass
class AutomationEditor:
    """What the editor shows; `settings` holds each setting's input value as text."""

    name: str = ""
    once: bool = False
    enabled: bool = True
    when: list[triggers.TriggerRow] = field(default_factory=lambda: triggers.rows_of([]))
    if_json: str = ""
    content: list[ContentRow] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=lambda: {
        "method": "POST", "url": "", "auth": "none", "username": "", "password": "",
        "attempts": "3", "timeout": "10", "protocol": "json", "retry": "standard",
        "max_per_second": ""})
    has_password: bool = False
    response: list[ResponseRow] = field(default_factory=list)
    errors: Errors = field(default_factory=dict)

    def with_blank_rows(self) -> "AutomationEditor":
        self.content.extend(ContentRow() for _ in range(BLANK_ROWS))
        self.response.extend(ResponseRow() for _ in range(BLANK_ROWS))
        return self

    @classmethod
    def of(cls, shown: dict[str, Any]) -> "AutomationEditor":
        """From the API's answer about an automation (its password masked)."""
        action, settings = shown["action"], shown["action"]["settings"]
        auth = settings["auth"]
        content = [ContentRow(item["key"], source, _text(item[source]))
                   for item in action["content"] for source in SOURCES if source in item]
        return cls(
            name=shown["name"], once=shown["once"], enabled=shown["enabled"],
            when=triggers.rows_of(shown["when"]),
            if_json=orjson.dumps(shown["if"], option=orjson.OPT_INDENT_2).decode()
            if shown.get("if") is not None else "",
            content=content,
            settings={**{k: "" if v is None else str(v) for k, v in settings.items()
                         if k != "auth"},
                      "auth": auth["type"], "username": auth.get("username", ""),
                      "password": ""},
            has_password=auth["type"] == "basic",
            response=[ResponseRow(r["field"], r["key"]) for r in action["response"]],
        ).with_blank_rows()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _rows(form: FormData, prefix: str) -> range:
    return rows(form, f"{prefix}-rows", 500)


def read(form: FormData, *, has_password: bool) -> AutomationEditor:
    settings = {name: text(form, name) for name in (
        "method", "url", "auth", "username", "attempts", "timeout", "protocol", "retry",
        "max_per_second")}
    password = form.get("password", "")
    settings["password"] = password if isinstance(password, str) else ""
    return AutomationEditor(
        name=text(form, "name"), once="once" in form, enabled="enabled" in form,
        when=triggers.read_rows(form), if_json=text(form, "if"),
        content=[ContentRow(text(form, f"content-{n}-key"), text(form, f"content-{n}-source"),
                            text(form, f"content-{n}-value"), f"content-{n}-remove" in form)
                 for n in _rows(form, "content")],
        settings=settings, has_password=has_password,
        response=[ResponseRow(text(form, f"response-{n}-field"), text(form, f"response-{n}-key"),
                              f"response-{n}-remove" in form) for n in _rows(form, "response")])


@dataclass
class Body:
    """The API body an editor stands for, and where each of its list items came from."""

    json: dict[str, Any]
    when_rows: list[int]
    content_rows: list[int]
    response_rows: list[int]
    problems: list[FieldError]


def _settings(editor: AutomationEditor) -> dict[str, Any]:
    s = editor.settings
    auth: dict[str, Any] = {"type": s["auth"] or "none"}
    if auth["type"] == "basic":
        kept = MASK if editor.has_password and not s["password"] else s["password"]
        auth.update(username=s["username"], password=kept)
    body: dict[str, Any] = {"method": s["method"], "url": s["url"], "auth": auth,
                            "protocol": s["protocol"], "retry": s["retry"],
                            "max_per_second": int(s["max_per_second"])
                            if s["max_per_second"].isdigit() else s["max_per_second"] or None}
    for number in ("attempts", "timeout"):
        body[number] = int(s[number]) if s[number].isdigit() else s[number]
    return body


def body_of(editor: AutomationEditor, *, with_enabled: bool) -> Body:
    when_rows = [n for n, row in enumerate(editor.when) if row.use]
    content_rows = [n for n, row in enumerate(editor.content) if row.key and not row.remove]
    response_rows = [n for n, row in enumerate(editor.response)
                     if (row.field or row.key) and not row.remove]
    json: dict[str, Any] = {
        "name": editor.name, "once": editor.once,
        "when": [editor.when[n].to_api() for n in when_rows],
        "action": {"type": "outgoing_webhook",
                   "content": [editor.content[n].to_api() for n in content_rows],
                   "settings": _settings(editor),
                   "response": [{"field": editor.response[n].field, "key": editor.response[n].key}
                                for n in response_rows]}}
    if with_enabled:
        json["enabled"] = editor.enabled
    problems = []
    if editor.if_json:
        try:
            json["if"] = orjson.loads(editor.if_json)
        except orjson.JSONDecodeError as exc:
            problems.append(FieldError(field="if", code="invalid",
                                       message=f"not valid JSON: {exc}"))
    return Body(json, when_rows, content_rows, response_rows, problems)


def place_errors(editor: AutomationEditor, body: Body, errors: list[FieldError]) -> None:
    editor.errors = place(errors, lambda name: _slot(editor, body, name))


def _slot(editor: AutomationEditor, body: Body, name: str) -> str:
    where = indexed(name.removeprefix("action."))
    if where is not None:
        part, n = where
        rows = {"when": body.when_rows, "content": body.content_rows,
                "response": body.response_rows}.get(part)
        if rows is not None and n < len(rows):
            return f"{part}-{rows[n]}"
    if match := SETTINGS_PART.match(name):
        return f"settings-{match.group(1)}"
    part, _, rest = name.partition(".")
    if part == "content" and rest:  # the form checks name content items by key
        return next((f"content-{n}" for n in body.content_rows
                     if editor.content[n].key == rest), "content")
    if part == "response" and rest:  # ... and response mappings by field
        return next((f"response-{n}" for n in body.response_rows
                     if editor.response[n].field == rest), "response")
    if name in ("action", "action.content"):
        return "content"
    if name == "action.response":
        return "response"
    return part if part in ("name", "when", "if", "once", "enabled") else ""
