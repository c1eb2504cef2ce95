"""The form editor's HTML form: read into a form definition, and shown again with its errors.

Fields are rows of inputs named `field-<n>-<what>`; `rows` says how many were shown. A row
left blank or marked for removal is not part of the form.
"""

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from services.casestore.console.render import (
    Errors,
    FormData,
    indexed,
    lines,
    place,
    pydantic_errors,
    rows,
    text,
)
from shared.forms import FieldType, FormDefinition
from shared.inputs import whole_number

BLANK_ROWS = 2
TYPES = [t.value for t in FieldType]
SLOTS = {"id": "id", "name": "name", "sections": "sections", "statuses": "statuses"}


@dataclass
class FieldRow:
    """One field as the editor shows it."""

    id: str = ""
    label: str = ""
    type: str = FieldType.TEXT.value
    mandatory: bool = False
    section: int = 0
    options: str = ""  # one per line
    remove: bool = False

    @property
    def blank(self) -> bool:
        return not (self.id or self.label)

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "label": self.label, "type": self.type,
                                "mandatory": self.mandatory, "section": self.section}
        if self.options.strip():
            body["options"] = lines(self.options)
        return body


@dataclass
class Editor:
    """What the editor page shows: the values and every problem next to its input."""

    id: str = ""
    name: str = ""
    sections: str = "Main"
    statuses: str = "registered"
    rows: list[FieldRow] = field(default_factory=list)
    errors: Errors = field(default_factory=dict)

    @property
    def section_names(self) -> list[str]:
        return lines(self.sections) or ["Main"]

    @classmethod
    def of(cls, form: FormDefinition) -> "Editor":
        rows = [FieldRow(f.id, f.label, f.type.value, f.mandatory, f.section,
                         "\n".join(f.options or [])) for f in form.fields]
        return cls(form.id, form.name, "\n".join(s.name for s in form.sections),
                   "\n".join(form.statuses), rows).with_blank_rows()

    def with_blank_rows(self, count: int = BLANK_ROWS) -> "Editor":
        self.rows.extend(FieldRow() for _ in range(count))
        return self


def _row(form: FormData, n: int) -> FieldRow:
    section = text(form, f"field-{n}-section")
    return FieldRow(id=text(form, f"field-{n}-id"), label=text(form, f"field-{n}-label"),
                    type=text(form, f"field-{n}-type") or FieldType.TEXT.value,
                    mandatory=f"field-{n}-mandatory" in form,
                    section=whole_number(section, 0, 2**31) or 0,
                    options=text(form, f"field-{n}-options"),
                    remove=f"field-{n}-remove" in form)


def read(form: FormData, form_id: str | None = None) -> Editor:
    """The editor as submitted (`form_id`: an existing form's id, which cannot change)."""
    fields = [_row(form, n) for n in rows(form, "rows", 500)]
    return Editor(form_id or text(form, "id"), text(form, "name"), text(form, "sections"),
                  text(form, "statuses"), fields)


def validate(editor: Editor) -> FormDefinition | None:
    """The form definition, or None with `editor.errors` filled in (the API's messages)."""
    kept = [n for n, row in enumerate(editor.rows) if not (row.remove or row.blank)]
    body = {"id": editor.id, "name": editor.name,
            "sections": [{"name": s} for s in lines(editor.sections)],
            "fields": [editor.rows[n].to_api() for n in kept],
            "statuses": lines(editor.statuses)}
    try:
        return FormDefinition.model_validate(body)
    except ValidationError as exc:
        editor.errors = place(pydantic_errors(exc, body), lambda f: _slot(f, kept))
        return None


def _slot(field_name: str, kept: list[int]) -> str:
    where = indexed(field_name)
    if where is not None and where[0] == "fields" and where[1] < len(kept):
        return f"field-{kept[where[1]]}"
    return SLOTS.get(field_name.split(".")[0], "")
