"""Files attached to `file` fields: stored in Postgres, listed in the case data, served signed."""

import unicodedata
import uuid
from urllib.parse import quote

from services.casestore import cases
from services.casestore.errors import ValidationFailed, found
from services.casestore.repo import Conn
from services.casestore.repo import cases as case_rows
from services.casestore.repo import files as file_rows
from shared.forms import FieldError, FieldType

MAX_NAME = 255


def check_name(name: str | None) -> str:
    """A file name that is safe to store and to echo in a Content-Disposition header."""
    problem = None
    if not name:
        problem = "give the file name as ?name=..."
    elif len(name) > MAX_NAME:
        problem = f"at most {MAX_NAME} characters"
    elif any(unicodedata.category(c) == "Cc" for c in name):
        problem = "control characters are not allowed"
    elif "/" in name or "\\" in name or name in (".", ".."):
        problem = "a file name, not a path"
    if problem:
        raise ValidationFailed([FieldError(field="name", code="invalid", message=problem)])
    assert name is not None
    return name


def content_disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback for old clients, the exact UTF-8 name for the rest."""
    fallback = "".join(c if c.isascii() and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def attach_file(conn: Conn, case_id: uuid.UUID, field_id: str, name: str,
                      content_type: str, content: bytes, *,
                      author: str) -> tuple[file_rows.FileRow, case_rows.CaseRow]:
    """Store the file and append it to the field's list as a normal, announced case update.

    Returns (file row, case row). The case is locked first, so concurrent uploads to one
    field each see the other's entry instead of overwriting it.
    """
    current, form = found(await cases.load_locked(conn, case_id), "no case has that id")
    field = form.field(field_id)
    if field is None or field.type != FieldType.FILE:
        raise ValidationFailed([FieldError(
            field=field_id, code="unknown_field" if field is None else "wrong_type",
            message=f"form '{form.id}' has no file field '{field_id}'")])
    row = await file_rows.insert_file(conn, uuid.uuid4(), case_id, field_id, name, content_type,
                                      content)
    listed = [*(current.data.get(field_id) or []), row.case_entry()]
    change = cases.plan_update(current, form, {field_id: listed}, None)
    return row, await cases.apply(conn, change, author)
