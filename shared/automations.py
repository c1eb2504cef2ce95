"""The automation contract (When / If / outgoing-webhook action) every service reads and writes:
the definition, its action, and the case metadata it may name (When and If are in
shared/automation_rules.py).

casestore validates and stores it, the dispatcher evaluates and executes it, ingest reads the
response mapping for returnDataURL answers.
"""

import re
from collections.abc import Callable
from typing import Any, Literal, Self

from pydantic import (
    ConfigDict,
    Field,
    HttpUrl,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from shared.automation_rules import AutomationPart, Rule, Trigger, too_deep
from shared.event_payloads import CaseChanged
from shared.forms import Label
from shared.outgoing_auth import ApiKeyAuth, Auth, Headers, NoAuth

# Case metadata that content, templates and conditions may name besides form fields, and how
# each is read from a case event (the form id travels beside it, in the envelope).
META: dict[str, Callable[[CaseChanged, str], Any]] = {
    "case_id": lambda case, _: str(case.case_id),
    "case_number": lambda case, _: case.case_number,
    "status": lambda case, _: case.status,
    "creator": lambda case, _: case.creator,
    "created_at": lambda case, _: case.created_at.isoformat(),
    "updated_at": lambda case, _: case.updated_at.isoformat(),
    "form_id": lambda _, form_id: form_id,
    "version": lambda case, _: case.version,
    # What fired a time-based trigger, when it was due, and how many seconds late it fired;
    # None for change triggers.
    "trigger": lambda case, _: case.timer.trigger if case.timer else None,
    "due_at": lambda case, _: case.timer.due_at.isoformat() if case.timer else None,
    "late_by": lambda case, _: case.timer.late_by if case.timer else None,
}
# `{case_number}` or `{field:text-field}` inside a template.
PLACEHOLDER = re.compile(r"\{(field:)?([a-z0-9][a-z0-9_-]*)\}")
RESPONSE_KEY = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


class ContentItem(AutomationPart):
    """One key of the sent content: exactly one of meta, field, value, template."""

    key: str = Field(min_length=1, max_length=200)
    meta: str | None = None
    field: str | None = None
    value: Any = None
    template: str | None = None

    @model_serializer(mode="wrap")
    def only_the_source(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Show the one source given, not three nulls beside it.
        dumped: dict[str, Any] = handler(self)
        chosen = next((n for n in ("meta", "field", "template") if dumped[n] is not None),
                      "value")
        return {"key": dumped["key"], chosen: dumped[chosen]}

    @model_validator(mode="after")
    def one_source(self) -> Self:
        given = [name for name in ("meta", "field", "value", "template")
                 if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"content '{self.key}': give exactly one of meta, field, value, "
                             f"template (got {', '.join(given) or 'none'})")
        return self


URL_MAX_LENGTH = 2083  # pydantic's HttpUrl limit


class RequestSettings(AutomationPart):
    method: Literal["POST", "GET", "PUT"] = "POST"
    url: HttpUrl
    auth: Auth = NoAuth(type="none")
    # Beyond the seed: headers of the administrator's own, sent with every request.
    headers: Headers = Field(default_factory=dict)
    attempts: Literal[1, 2, 3] = 1
    timeout: Literal[10, 30, 60] = 10
    protocol: Literal["json", "json_array", "form"] = "json"
    # Beyond the seed: "extended" retries for about a day (shared/schedule.py) instead of the
    # `attempts` above, and at most `max_per_second` requests a second to this endpoint.
    retry: Literal["standard", "extended"] = "standard"
    max_per_second: int | None = Field(default=None, ge=1, le=10_000)
    # The most requests in flight to this endpoint from one dispatcher, however well it
    # answers (its limit adapts below this); None: CASEWIRE_ENDPOINT_CONCURRENCY.
    max_in_flight: int | None = Field(default=None, ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def url_fits_once_normalised(cls, url: HttpUrl) -> HttpUrl:
        # HttpUrl limits the URL as given; normalising it (a "/" path, punycode) can lengthen
        # it past the limit, and the stored definition would then never validate again.
        if len(str(url)) > URL_MAX_LENGTH:
            raise ValueError(f"the URL is longer than {URL_MAX_LENGTH} characters")
        return url

    @model_validator(mode="after")
    def headers_apart_from_auth(self) -> Self:
        # The API key's header is a secret; a plain header of the same name would replace it.
        if isinstance(self.auth, ApiKeyAuth) and self.auth.header.lower() in {
                name.lower() for name in self.headers}:
            raise ValueError(f"the header '{self.auth.header}' carries the API key; it cannot "
                             "also be one of `headers`")
        names = [name.lower() for name in self.headers]
        if len(names) != len(set(names)):
            raise ValueError("header names must differ in more than letter case")
        return self


class ResponseMapping(AutomationPart):
    """Write the JSON response's `key` (dotted path) into the case field `field`."""

    field: str
    key: str = Field(pattern=RESPONSE_KEY.pattern)


class OutgoingWebhook(AutomationPart):
    type: Literal["outgoing_webhook"]
    content: list[ContentItem] = Field(default_factory=list)
    settings: RequestSettings
    response: list[ResponseMapping] = Field(default_factory=list)

    @model_validator(mode="after")
    def keys_unique(self) -> Self:
        keys = [c.key for c in self.content]
        if "returnDataURL" in keys and self.response:
            raise ValueError("content key 'returnDataURL' is reserved when response data is set")
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"content keys must be unique: {', '.join(duplicates)}")
        return self


class AutomationDefinition(AutomationPart):
    """What an administrator writes; the API's POST/PUT body."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Label
    when: list[Trigger] = Field(min_length=1)
    if_: Rule | None = Field(default=None, alias="if")
    once: bool = False
    action: OutgoingWebhook

    @model_validator(mode="before")
    @classmethod
    def if_not_too_deep(cls, data: Any) -> Any:
        # Before the fields: validating a deep `if` is itself the recursion to avoid.
        problem = too_deep(data.get("if", data.get("if_"))) if isinstance(data, dict) else None
        if problem:
            raise ValueError(problem)
        return data

    def public(self) -> dict[str, Any]:
        """As JSON, with `if` spelled as the API spells it."""
        return self.model_dump(mode="json", by_alias=True)


def metadata(case: CaseChanged, form_id: str) -> dict[str, Any]:
    """Every META name's value for this case."""
    return {name: value(case, form_id) for name, value in META.items()}


def response_values(definition: AutomationDefinition, answer: Any) -> dict[str, Any]:
    """The mapped keys (dotted paths) found in a receiver's JSON answer, by case field."""
    values: dict[str, Any] = {}
    for mapping in definition.action.response:
        node = answer
        for part in mapping.key.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            values[mapping.field] = node
    return values

