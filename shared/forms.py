"""The form contract (sections, fields, statuses) as the admin API takes it and the `forms` table
holds it; a case's values are checked against it in shared/form_values.py."""

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


# The `forms` columns FormDefinition.from_record reads, in every reader's SELECT.
FORM_COLUMN_NAMES = ("id", "name", "sections", "fields", "statuses", "time_zone", "revision")
FORM_COLUMNS = ", ".join(FORM_COLUMN_NAMES)


def form_columns(alias: str) -> str:
    """FORM_COLUMNS of the forms table under another name in a join (`f.id, f.name, ...`)."""
    return ", ".join(f"{alias}.{name}" for name in FORM_COLUMN_NAMES)


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
