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
from shared.outgoing_auth import SECRET_KEYS

SOURCES = ("field", "meta", "value", "template")
BLANK_ROWS = 2
SETTINGS_PART = re.compile(r"^action\.settings\.(\w+)")


# The inputs of every kind of auth but its secret (one input, "password", holds whichever).
AUTH_BLANKS = {"auth_header": "X-API-Key", "token_url": "", "client_id": "", "scope": "",
               "client_auth": "basic"}
AUTH_INPUTS = {"basic": {"username": "username"}, "api_key": {"auth_header": "header"},
               "oauth2_client_credentials": {"token_url": "token_url", "client_id": "client_id",
                                             "scope": "scope", "client_auth": "client_auth"}}


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
        "max_per_second": "", "max_in_flight": "", "headers": "", **AUTH_BLANKS})
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
                         if k not in ("auth", "headers")},
                      "headers": "\n".join(f"{k}: {v}" for k, v in settings["headers"].items()),
                      **_auth_inputs(auth)},
            has_password=auth["type"] in SECRET_KEYS,
            response=[ResponseRow(r["field"], r["key"]) for r in action["response"]],
        ).with_blank_rows()


# Settings that may be left empty (null: the default).
OPTIONAL_NUMBERS = ("max_per_second", "max_in_flight")
def _auth_inputs(auth: dict[str, Any]) -> dict[str, str]:
    """An API auth as the editor's inputs (its secret never shown)."""
    inputs = {"auth": auth["type"], "username": "", "password": "", **AUTH_BLANKS}
    for name, key in AUTH_INPUTS.get(auth["type"], {}).items():
        inputs[name] = auth.get(key) or ""
    return inputs


def _auth_of(s: dict[str, str], has_secret: bool) -> dict[str, Any]:
    """The inputs as an API auth; a blank secret keeps the stored one."""
    kind = s["auth"] or "none"
    auth: dict[str, Any] = {"type": kind}
    auth.update({key: s[name] for name, key in AUTH_INPUTS.get(kind, {}).items()
                 if s[name] or key != "scope"})
    if kind in SECRET_KEYS:
        auth[SECRET_KEYS[kind]] = MASK if has_secret and not s["password"] else s["password"]
    return auth


def _headers_of(text_value: str) -> dict[str, str] | str:
    """`Name: value` lines as headers; anything else is left for the API to refuse."""
    headers: dict[str, str] = {}
    for line in text_value.splitlines():
        if line.strip():
            name, colon, value = line.partition(":")
            if not colon:
                return text_value
            headers[name.strip()] = value.strip()
    return headers


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _rows(form: FormData, prefix: str) -> range:
    return rows(form, f"{prefix}-rows", 500)


def read(form: FormData, *, has_password: bool) -> AutomationEditor:
    settings = {name: text(form, name) for name in (
        "method", "url", "auth", "username", "attempts", "timeout", "protocol", "retry",
        *OPTIONAL_NUMBERS, *AUTH_BLANKS)}
    raw_headers = form.get("headers", "")
    settings["headers"] = raw_headers if isinstance(raw_headers, str) else ""
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
    body: dict[str, Any] = {"method": s["method"], "url": s["url"],
                            "auth": _auth_of(s, editor.has_password),
                            "protocol": s["protocol"], "retry": s["retry"],
                            "headers": _headers_of(s["headers"])}
    for number in ("attempts", "timeout", *OPTIONAL_NUMBERS):
        body[number] = int(s[number]) if s[number].isdigit() else s[number]
    for number in OPTIONAL_NUMBERS:
        if s[number] == "":
            body[number] = None  # the default
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
    part = name.partition(".")[0].partition("[")[0]
    if name in ("action", "action.content"):
        return "content"
    if name == "action.response":
        return "response"
    return part if part in ("name", "when", "if", "once", "enabled") else ""
