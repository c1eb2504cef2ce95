"""When and If, evaluated on case events as the dispatcher receives them (pure, no I/O)."""

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.dispatcher.rules import fires
from shared.automations import AutomationDefinition
from shared.event_payloads import CaseChanged, FieldChange
from shared.events import CASE_CREATED, CASE_DELETED, CASE_UPDATED

ACTION = {"type": "outgoing_webhook", "settings": {"url": "https://crm.example/hooks"}}
DATA = {"text-field": "VIP customer", "priority": "high", "amount": 120, "due-date": "2026-03-01",
        "tags": ["a", "b"], "urgent": True}


def case(changes: dict[str, tuple[Any, Any]] | None = None, **data: Any) -> CaseChanged:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    values = {**DATA, **data}
    status = values.pop("status", "registered")
    return CaseChanged(
        case_id=uuid.uuid4(), case_number=7, status=status, data=values, creator="Admin",
        created_at=now, updated_at=now, version=2, author="Admin",
        changes=[FieldChange(field=k, old=old, new=new)
                 for k, (old, new) in (changes or {}).items()])


def automation(when: list[dict[str, Any]], rule: dict[str, Any] | None = None
               ) -> AutomationDefinition:
    return AutomationDefinition.model_validate(
        {"name": "t", "when": when, "if": rule, "action": ACTION})


@pytest.mark.parametrize(("when", "event", "changes", "expected"), [
    ({"event": "case_created"}, CASE_CREATED, {}, True),
    ({"event": "case_created"}, CASE_UPDATED, {"amount": (1, 2)}, False),
    ({"event": "case_changed"}, CASE_UPDATED, {"amount": (1, 2)}, True),
    ({"event": "case_changed"}, CASE_CREATED, {}, False),
    ({"event": "field_changed", "fields": ["amount"]}, CASE_UPDATED, {"amount": (1, 2)}, True),
    ({"event": "field_changed", "fields": ["amount"]}, CASE_UPDATED, {"amount": (1, None)}, True),
    ({"event": "field_changed", "fields": ["amount"]}, CASE_UPDATED, {"urgent": (1, 2)}, False),
    ({"event": "field_filled", "fields": ["email"]}, CASE_UPDATED, {"email": (None, "a@b.c")},
     True),
    ({"event": "field_filled", "fields": ["email"]}, CASE_UPDATED, {"email": ("x@y.z", "a@b.c")},
     False),
    ({"event": "field_filled", "fields": ["email"]}, CASE_UPDATED, {"email": ("a@b.c", None)},
     False),
    ({"event": "status_changed"}, CASE_UPDATED, {"status": ("registered", "closed")}, True),
    ({"event": "status_changed", "to": ["closed"]}, CASE_UPDATED,
     {"status": ("registered", "closed")}, True),
    ({"event": "status_changed", "to": ["closed"]}, CASE_UPDATED,
     {"status": ("registered", "in_progress")}, False),
    ({"event": "status_changed"}, CASE_UPDATED, {"amount": (1, 2)}, False),
    ({"event": "case_changed"}, CASE_DELETED, {"amount": (1, 2)}, False),
])
def test_when(when: dict[str, Any], event: str, changes: dict[str, tuple[Any, Any]],
              expected: bool) -> None:
    assert fires(automation([when]), event, case(changes), "support") is expected


def test_when_entries_are_alternatives() -> None:
    rule = automation([{"event": "case_created"}, {"event": "status_changed"}])
    assert fires(rule, CASE_CREATED, case(), "support")
    assert fires(rule, CASE_UPDATED, case({"status": ("registered", "closed")}), "support")
    assert not fires(rule, CASE_UPDATED, case({"amount": (1, 2)}), "support")


def test_deletion_never_fires_even_a_catch_all() -> None:
    every = [{"event": e} for e in ("case_created", "case_changed", "status_changed")]
    assert not fires(automation(every), CASE_DELETED, case({"status": ("a", "b")}), "support")


CREATED = [{"event": "case_created"}]


@pytest.mark.parametrize(("condition", "expected"), [
    ({"field": "priority", "op": "eq", "value": "high"}, True),
    ({"field": "priority", "op": "eq", "value": "low"}, False),
    ({"field": "amount", "op": "eq", "value": 120.0}, True),
    ({"field": "priority", "op": "ne", "value": "low"}, True),
    ({"field": "priority", "op": "ne", "value": "high"}, False),
    ({"field": "text-field", "op": "contains", "value": "VIP"}, True),
    ({"field": "text-field", "op": "contains", "value": "vip"}, False),
    ({"field": "tags", "op": "contains", "value": "b"}, True),
    ({"field": "tags", "op": "not_contains", "value": "c"}, True),
    ({"field": "text-field", "op": "not_contains", "value": "VIP"}, False),
    ({"field": "amount", "op": "gt", "value": 100}, True),
    ({"field": "amount", "op": "gt", "value": 120}, False),
    ({"field": "amount", "op": "gte", "value": 120}, True),
    ({"field": "amount", "op": "lt", "value": 120}, False),
    ({"field": "amount", "op": "lte", "value": 120}, True),
    ({"field": "due-date", "op": "lt", "value": "2026-04-01"}, True),
    ({"field": "due-date", "op": "gt", "value": "2026-04-01"}, False),
    ({"field": "text-field", "op": "gt", "value": 3}, False),  # unlike types never order
    ({"field": "email", "op": "empty"}, True),
    ({"field": "priority", "op": "empty"}, False),
    ({"field": "priority", "op": "not_empty"}, True),
    ({"field": "email", "op": "not_empty"}, False),
    ({"field": "priority", "op": "in", "value": ["high", "urgent"]}, True),
    ({"field": "priority", "op": "in", "value": ["low"]}, False),
    ({"field": "tags", "op": "in", "value": ["b", "z"]}, True),
    ({"field": "status", "op": "eq", "value": "registered"}, True),
    ({"field": "case_number", "op": "gte", "value": 7}, True),
    ({"field": "creator", "op": "eq", "value": "Admin"}, True),
    ({"field": "form_id", "op": "eq", "value": "support"}, True),
])
def test_if_operator(condition: dict[str, Any], expected: bool) -> None:
    assert fires(automation(CREATED, condition), CASE_CREATED, case(), "support") is expected


@pytest.mark.parametrize(("condition", "changes", "expected"), [
    ({"field": "priority", "op": "changed_from", "value": "low"}, {"priority": ("low", "high")},
     True),
    ({"field": "priority", "op": "changed_from", "value": "high"}, {"priority": ("low", "high")},
     False),
    ({"field": "priority", "op": "changed_to", "value": "high"}, {"priority": ("low", "high")},
     True),
    ({"field": "priority", "op": "changed_to", "value": "high"}, {"amount": (1, 2)}, False),
    ({"field": "status", "op": "changed_to", "value": "closed"},
     {"status": ("registered", "closed")}, True),
    ({"field": "email", "op": "changed_from"}, {"email": (None, "a@b.c")}, True),
])
def test_changed_from_and_to_see_the_change_that_fired(
        condition: dict[str, Any], changes: dict[str, tuple[Any, Any]], expected: bool) -> None:
    rule = automation([{"event": "case_changed"}], condition)
    assert fires(rule, CASE_UPDATED, case(changes), "support") is expected


NESTED = {"all": [
    {"field": "priority", "op": "in", "value": ["high", "urgent"]},
    {"any": [{"field": "status", "op": "eq", "value": "registered"},
             {"field": "text-field", "op": "contains", "value": "VIP"}]},
]}


@pytest.mark.parametrize(("data", "expected"), [
    ({}, True),
    ({"status": "closed"}, True),  # the inner any still holds through "VIP"
    ({"status": "closed", "text-field": "regular"}, False),
    ({"priority": "low"}, False),
    ({"text-field": "regular"}, True),
])
def test_nested_all_and_any_groups(data: dict[str, Any], expected: bool) -> None:
    assert fires(automation(CREATED, NESTED), CASE_CREATED, case(**data), "support") is expected
