"""If: do an automation's conditions hold on a case? (The dispatcher asks before it sends;
casestore before it sets a timer that repeats for as long as they do.)"""

from typing import Any

from shared.automation_rules import AllOf, AnyOf, Condition, Rule
from shared.automations import metadata
from shared.event_payloads import CaseChanged, FieldChange
from shared.form_values import is_empty


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _equal(actual: Any, expected: Any) -> bool:
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None and not isinstance(actual, str | list):
        return a == b
    return bool(actual == expected)


def _order(actual: Any, expected: Any) -> int | None:
    """-1/0/1 comparing numbers numerically and strings (ISO dates) as text; None if unlike."""
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    if isinstance(actual, str) and isinstance(expected, str):
        return (actual > expected) - (actual < expected)
    return None


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, list):
        return any(_equal(item, expected) for item in actual)
    return isinstance(actual, str) and isinstance(expected, str) and expected in actual


def _holds(condition: Condition, values: dict[str, Any], changes: dict[str, FieldChange]) -> bool:
    actual, expected = values.get(condition.field), condition.value
    match condition.op:
        case "eq":
            return _equal(actual, expected)
        case "ne":
            return not _equal(actual, expected)
        case "contains":
            return _contains(actual, expected)
        case "not_contains":
            return not _contains(actual, expected)
        case "gt" | "gte" | "lt" | "lte":
            order = _order(actual, expected)
            return order is not None and {"gt": order > 0, "gte": order >= 0, "lt": order < 0,
                                          "lte": order <= 0}[condition.op]
        case "empty":
            return is_empty(actual)
        case "not_empty":
            return not is_empty(actual)
        case "in":
            if isinstance(actual, list):
                return any(_contains(expected, item) for item in actual)
            return _contains(expected, actual)
        case "changed_from" | "changed_to":
            change = changes.get(condition.field)
            if change is None:
                return False
            seen = change.old if condition.op == "changed_from" else change.new
            return is_empty(seen) if expected is None else _equal(seen, expected)
    return False


def _rule_holds(rule: Rule, values: dict[str, Any], changes: dict[str, FieldChange]) -> bool:
    if isinstance(rule, AllOf):
        return all(_rule_holds(r, values, changes) for r in rule.all)
    if isinstance(rule, AnyOf):
        return any(_rule_holds(r, values, changes) for r in rule.any)
    return _holds(rule, values, changes)




def holds(rule: Rule, case: CaseChanged, form_id: str) -> bool:
    """The rule on the case as the event has it (and the change that fired it)."""
    changes = {c.field: c for c in case.changes}
    # Form fields win over metadata of the same name, except `status`, always the case status.
    values = {**metadata(case, form_id), **case.data, "status": case.status}
    return _rule_holds(rule, values, changes)
