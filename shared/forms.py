"""The form contract (sections, fields, statuses) and case-data validation used by every writer."""

import math
import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Protocol, Self
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from shared.durations import zone

SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
INT64 = range(-(2**63), 2**63)
INTEGER = re.compile(r"^[+-]?[0-9]+$")
NUL_MESSAGE = "text may not contain NUL (\\u0000) characters"


def _refuse_nul(value: str) -> str:
    # Postgres text and jsonb cannot hold U+0000; refusing it here beats a 500 at INSERT time.
    if "\x00" in value:
        raise ValueError(NUL_MESSAGE)
    return value


Label = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_refuse_nul)]


class Row(Protocol):
    """A database row (asyncpg.Record) as far as this module reads one."""

    def __getitem__(self, key: str, /) -> Any: ...


class FieldType(StrEnum):
    TEXT = "text"
    TEXTAREA = "textarea"
    EMAIL = "email"
    NUMBER = "number"
    DATE = "date"
    DATETIME = "datetime"
    SELECT = "select"
    MULTISELECT = "multiselect"
    CHECKBOX = "checkbox"
    FILE = "file"


OPTION_TYPES = {FieldType.SELECT, FieldType.MULTISELECT}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Label


class FormField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=SLUG)
    label: Label
    type: FieldType
    mandatory: bool = False
    section: int = Field(default=0, ge=0)
    options: list[Label] | None = None

    @model_validator(mode="after")
    def options_match_type(self) -> Self:
        if self.type in OPTION_TYPES:
            if not self.options:
                raise ValueError(f"field '{self.id}': type {self.type} needs a list of options")
            if len(set(self.options)) != len(self.options):
                raise ValueError(f"field '{self.id}': options must be unique")
        elif self.options is not None:
            raise ValueError(f"field '{self.id}': options are only allowed on select types")
        return self


class FormDefinition(BaseModel):
    """A form as the admin API accepts it and as every service sees it."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=SLUG)
    name: Label
    sections: list[Section] = Field(default_factory=lambda: [Section(name="Main")], min_length=1)
    fields: list[FormField] = Field(default_factory=list)
    statuses: list[Label] = Field(default_factory=lambda: ["registered"], min_length=1)
    # Where a date field's day begins and ends, for time-based triggers (IANA name).
    time_zone: str = "UTC"
    # The stored form's revision (see migration 003); neither accepted from nor shown to clients.
    _revision: int = PrivateAttr(default=0)
    _by_id: dict[str, "FormField"] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        # Field lookups run for every key of every incoming webhook.
        self._by_id = {f.id: f for f in self.fields}

    @field_validator("time_zone")
    @classmethod
    def time_zone_known(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("statuses")
    @classmethod
    def statuses_unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value) or any(not s.strip() for s in value):
            raise ValueError("statuses must be unique, non-empty strings")
        return value

    @model_validator(mode="after")
    def fields_consistent(self) -> Self:
        ids = [f.id for f in self.fields]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"field ids must be unique in a form: {', '.join(duplicates)}")
        for f in self.fields:
            if f.section >= len(self.sections):
                raise ValueError(f"field '{f.id}': section {f.section} does not exist "
                                 f"(the form has {len(self.sections)})")
        return self

    @classmethod
    def from_record(cls, row: "Row") -> Self:
        """From a `forms` table row (jsonb sections and fields, text[] statuses)."""
        form = cls(id=row["id"], name=row["name"], sections=row["sections"],
                   fields=row["fields"], statuses=list(row["statuses"]),
                   time_zone=row["time_zone"])
        form._revision = row["revision"]
        return form

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def initial_status(self) -> str:
        return self.statuses[0]

    def field(self, field_id: str) -> FormField | None:
        return self._by_id.get(field_id)

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.time_zone)


class FieldError(BaseModel):
    field: str | None
    code: str
    message: str


# An answer lists at most this many problems, then how many more there were (or how much was
# not examined): 95,000 unknown keys in a 1 MiB body once made 8.7 MB of errors and held
# ingest's event loop for 1.7 s.
MAX_ERRORS = 100


def unlisted(count: int, what: str) -> FieldError:
    """The last entry of a cut list: how many more `what` there were."""
    return FieldError(field=None, code="too_many_errors",
                      message=f"only the first {MAX_ERRORS} problems are listed; "
                              f"{count} more {what}")


def sample_value(f: FormField) -> Any:
    """A value of the field's type that validates: for examples and test sends."""
    options = f.options or [""]
    return {
        FieldType.EMAIL: "someone@example.com", FieldType.NUMBER: 42,
        FieldType.DATE: "2026-01-31", FieldType.DATETIME: "2026-01-31T12:00:00+00:00",
        FieldType.SELECT: options[0], FieldType.MULTISELECT: options[:1],
        FieldType.CHECKBOX: True, FieldType.FILE: [],
    }.get(f.type, f"Simple input in a text-field with id {f.id}")


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
