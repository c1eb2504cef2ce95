"""When and If of an automation: its triggers (change and time triggers) and its conditions,
as shared/automations.py's AutomationDefinition holds them."""

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.durations import Duration, PositiveDuration

# Operators that take no `value`.
UNARY = ("empty", "not_empty")
# How deep `all` / `any` groups may nest in `if`. Far beyond what a person writes, and far below
# what the validator's recursion and the JSON encoder (255 levels) can take.
MAX_RULE_DEPTH = 20


class AutomationPart(BaseModel):
    """Every part of an automation: frozen, and no key it does not know."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# When: any entry fires the automation. Change triggers fire on case events; time triggers
# (DateReached, LeadTimeExceeded) on timers casestore keeps for each case.
class CaseCreated(AutomationPart):
    event: Literal["case_created"]


class CaseChangedTrigger(AutomationPart):
    event: Literal["case_changed"]


class FieldChanged(AutomationPart):
    """A value set, modified or removed on an existing case."""

    event: Literal["field_changed"]
    fields: list[str] = Field(min_length=1)


class FieldFilled(AutomationPart):
    """A field of an existing case went from empty to a value."""

    event: Literal["field_filled"]
    fields: list[str] = Field(min_length=1)


class StatusChanged(AutomationPart):
    event: Literal["status_changed"]
    to: list[str] | None = None


class Repeat(AutomationPart):
    every: PositiveDuration
    count: int | None = Field(default=None, ge=1, le=1000)  # None: until If stops holding


class DateReached(AutomationPart):
    """The time in a date or datetime field, moved by `offset`, is reached (a date field's
    time of day is `at`, in the form's time zone)."""

    event: Literal["date_reached"]
    # Only these field types have a time to reach (the console offers no other).
    field: str = Field(json_schema_extra={"field_types": ["date", "datetime"]})
    offset: Duration = "PT0S"
    at: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    repeat: Repeat | None = None


class LeadTimeExceeded(AutomationPart):
    """A case went `duration` (since created, or since it entered its status) without
    reaching one of `until_status`."""

    event: Literal["lead_time_exceeded"]
    duration: PositiveDuration
    since: Literal["created", "status_entered"] = "created"
    until_status: list[str] = Field(min_length=1)


TimeTrigger = DateReached | LeadTimeExceeded
Trigger = Annotated[CaseCreated | CaseChangedTrigger | FieldChanged | FieldFilled | StatusChanged
                    | DateReached | LeadTimeExceeded, Field(discriminator="event")]


class Condition(AutomationPart):
    """`field` names a form field, else case metadata (`status`, `case_number`, ...)."""

    field: str
    op: Literal["eq", "ne", "contains", "not_contains", "gt", "gte", "lt", "lte", "empty",
                "not_empty", "in", "changed_from", "changed_to"]
    value: Any = None

    @model_validator(mode="after")
    def value_fits_operator(self) -> Self:
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError(f"condition on '{self.field}': 'in' needs a list as value")
        if self.op not in UNARY and self.value is None and self.op not in (
                "eq", "ne", "changed_from", "changed_to"):
            raise ValueError(f"condition on '{self.field}': '{self.op}' needs a value")
        return self


class AllOf(AutomationPart):
    all: list["Rule"] = Field(min_length=1)


class AnyOf(AutomationPart):
    any: list["Rule"] = Field(min_length=1)


Rule = Condition | AllOf | AnyOf


def rule_depth(raw: Any) -> int:
    """How deep `all` / `any` groups nest in a raw, unvalidated `if`; walked without recursion."""
    deepest, pending = 0, [(raw, 1)]
    while pending:
        node, depth = pending.pop()
        if not isinstance(node, dict):
            continue
        for group in ("all", "any"):
            children = node.get(group)
            if isinstance(children, list):
                deepest = max(deepest, depth)
                pending.extend((child, depth + 1) for child in children)
    return deepest


def too_deep(raw: Any) -> str | None:
    """Why a raw `if` is refused before it is validated, or None."""
    depth = rule_depth(raw)
    if depth <= MAX_RULE_DEPTH:
        return None
    return f"'if' groups are nested {depth} deep; at most {MAX_RULE_DEPTH} levels are allowed"


AllOf.model_rebuild()
AnyOf.model_rebuild()
