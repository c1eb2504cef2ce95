"""A case's values checked against its form: what every writer (ingest, casestore's API and
consumer, receivers' answers) stores, and the errors it answers."""

import math
import re
from datetime import date, datetime
from typing import Any

from shared.forms import (
    MAX_ERRORS,
    NUL_MESSAGE,
    FieldError,
    FieldType,
    FormDefinition,
    FormField,
    unlisted,
)

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
INT64 = range(-(2**63), 2**63)
INTEGER = re.compile(r"^[+-]?[0-9]+$")


# A case's metadata, which no request sets: Casewire does (shared.automations.META reads it).
CASE_METADATA = frozenset({"case_id", "case_number", "status", "creator", "created_at",
                           "updated_at", "form_id", "version"})
SET_BY_CASEWIRE = ("'{key}' is case metadata that Casewire sets itself (a case from an incoming "
                   "webhook always has the creator 'Addon - Incoming Webhook'); leave it out")


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _check_number(value: Any) -> tuple[Any, str | None]:
    """Numbers may arrive as JSON numbers or numeric strings; integers stay exact."""
    if isinstance(value, str):
        text = value.strip()
        if INTEGER.match(text):
            if len(text.lstrip("+-0")) > len(str(2**63)):
                # Python refuses to parse over 4,300 digits; nothing that long is in range.
                return value, "expected an integer within 64 bits"
            value = int(text)
        else:
            try:
                value = float(text)
            except ValueError:
                return value, "expected a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value, "expected a number"
    if isinstance(value, int):
        return value, None if value in INT64 else "expected an integer within 64 bits"
    return value, None if math.isfinite(value) else "expected a finite number"


def _coerce(f: FormField, value: Any) -> tuple[Any, FieldError | None]:
    """Check one non-empty value against its field's type; returns the value to store."""

    def fail(code: str, message: str) -> tuple[Any, FieldError]:
        return value, FieldError(field=f.id, code=code, message=message)

    if isinstance(value, str) and "\x00" in value:
        return fail("wrong_type", NUL_MESSAGE)
    match f.type:
        case FieldType.TEXT | FieldType.TEXTAREA:
            ok = isinstance(value, str)
            return (value, None) if ok else fail("wrong_type", "expected a string")
        case FieldType.EMAIL:
            ok = isinstance(value, str) and EMAIL.match(value) is not None
            return (value, None) if ok else fail("wrong_type", "expected an email address")
        case FieldType.NUMBER:
            number, problem = _check_number(value)
            return (number, None) if problem is None else fail("value_not_numeric", problem)
        case FieldType.DATE:
            try:
                ok = isinstance(value, str) and date.fromisoformat(value).isoformat() == value
            except ValueError:
                ok = False
            return (value, None) if ok else fail("wrong_date", "expected YYYY-MM-DD")
        case FieldType.DATETIME:
            try:
                ok = isinstance(value, str) and bool(datetime.fromisoformat(value))
            except ValueError:
                ok = False
            return (value, None) if ok else fail("wrong_date", "expected an ISO 8601 date and time")
        case FieldType.SELECT:
            if not isinstance(value, str):
                return fail("wrong_type", "expected one option as a string")
            allowed = f.options or []
            return (value, None) if value in allowed else fail(
                "value_not_allowed", f"expected one of: {', '.join(allowed)}")
        case FieldType.MULTISELECT:
            if not isinstance(value, list):
                return fail("value_not_array", "expected an array of options")
            bad = [v for v in value if v not in (f.options or [])]
            return (value, None) if not bad else fail(
                "value_not_allowed", f"not options of this field: {', '.join(map(str, bad))}")
        case FieldType.CHECKBOX:
            ok = isinstance(value, bool)
            return (value, None) if ok else fail("wrong_type", "expected true or false")
        case FieldType.FILE:
            return fail("wrong_type", "files are attached through the admin API, not as values")
    return fail("wrong_type", "unsupported field type")  # pragma: no cover


def validate_case_data(
    form: FormDefinition,
    data: dict[str, Any],
    *,
    check_mandatory: bool,
    first_section_only: bool = False,
    partial: bool = False,
) -> tuple[dict[str, Any], list[FieldError]]:
    """Validate values against the form; returns (values to store, one error per problem).

    Empty values of optional fields are dropped (the field stays unset); `partial` is an update
    that only checks the fields it touches. Past MAX_ERRORS problems the remaining keys are
    not examined: the last entry says how many.
    """
    clean: dict[str, Any] = {}
    errors: list[FieldError] = []
    for examined, (key, value) in enumerate(data.items()):
        if len(errors) == MAX_ERRORS:
            return clean, [*errors, unlisted(len(data) - examined, "keys were not checked")]
        f = form.field(key)
        if f is None:
            errors.append(FieldError(field=key, code="unknown_field", message=(
                SET_BY_CASEWIRE.format(key=key) if key in CASE_METADATA
                else f"form '{form.id}' has no field '{key}'")))
        elif first_section_only and f.section != 0:
            errors.append(FieldError(field=key, code="field_not_in_first_section",
                                     message="only fields of the form's first section may be set"))
        elif is_empty(value):
            if f.mandatory and check_mandatory:
                errors.append(FieldError(field=key, code="value_missing",
                                         message="the value is missing"))
            elif partial:
                clean[key] = None
        else:
            stored, error = _coerce(f, value)
            if error:
                errors.append(error)
            else:
                clean[key] = stored
    if check_mandatory and not partial:
        for f in form.fields:
            in_scope = f.section == 0 or not first_section_only
            if f.mandatory and in_scope and f.id not in data:
                errors.append(FieldError(field=f.id, code="field_required",
                                         message="the field is mandatory and data is missing"))
    return clean, errors
