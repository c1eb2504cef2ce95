"""Case writes: the row, its history entry and its outbox event commit in one transaction.

An update is planned first (plan_update: pure, every check) and then applied (apply: writes).
"""

import uuid
from dataclasses import dataclass, field
from typing import Any

from services.casestore import timers
from services.casestore.errors import ValidationFailed, found
from services.casestore.form_writes import load_form
from services.casestore.repo import Conn
from services.casestore.repo import cases as case_rows
from services.casestore.repo import files as file_rows
from services.casestore.repo import forms as form_rows
from services.casestore.repo import outbox as outbox_rows
from shared.event_payloads import CaseChanged, FieldChange
from shared.events import CASE_CREATED, CASE_DELETED, CASE_UPDATED, Envelope, new_event
from shared.form_values import validate_case_data
from shared.forms import FieldError, FieldType, FormDefinition


def _announce(type_: str, row: case_rows.CaseRow, changes: list[FieldChange], author: str,
              *, form_revision: int = 0, previous_status: str | None = None,
              skip_triggers: bool = False, causation_id: str | None = None,
              correlation_id: str | None = None, automation_depth: int = 0,
              source_automation_id: uuid.UUID | None = None) -> Envelope:
    payload = CaseChanged.from_row(
        row, author, previous_status=previous_status, changes=changes,
        skip_triggers=skip_triggers, automation_depth=automation_depth,
        source_automation_id=source_automation_id, form_revision=form_revision)
    return new_event(type_, payload, form_id=row.form_id, case_id=row.id,
                     causation_id=causation_id, correlation_id=correlation_id)


def _check_status(form: FormDefinition, status: str | None) -> str:
    if status is None:
        return form.initial_status
    if status not in form.statuses:
        raise ValidationFailed([FieldError(
            field="status", code="value_not_allowed",
            message=f"expected one of: {', '.join(form.statuses)}")])
    return status


@dataclass(frozen=True)
class NewCase:
    """A case to insert; `data` must already be validated against the form."""

    data: dict[str, Any]
    creator: str
    case_id: uuid.UUID = field(default_factory=uuid.uuid4)
    status: str | None = None
    skip_triggers: bool = False
    causation_id: str | None = None
    # Given when the case is written outside its request's context (in a batch).
    correlation_id: str | None = None


async def create_cases(conn: Conn, form: FormDefinition,
                       new: list[NewCase]) -> list[case_rows.CaseRow]:
    """Insert cases with the form's next numbers, in order.

    One counter update numbers them all: the counter row is each form's point of contention,
    and a batch holds its lock once instead of once per case.
    """
    statuses = [_check_status(form, c.status) for c in new]
    changes = [[FieldChange(field=k, new=v) for k, v in c.data.items()] for c in new]
    rows = await case_rows.insert_cases(conn, form.id, [
        (c.case_id, status, c.data, c.creator, c.skip_triggers,
         [change.model_dump(mode="json") for change in case_changes])
        for c, status, case_changes in zip(new, statuses, changes, strict=True)])
    await timers.on_created(conn, form, rows, {c.case_id for c in new if c.skip_triggers})
    await outbox_rows.insert_outbox(conn, [
        _announce(CASE_CREATED, row, case_changes, c.creator, form_revision=form.revision,
                  skip_triggers=c.skip_triggers,
                  causation_id=c.causation_id, correlation_id=c.correlation_id)
        for row, c, case_changes in zip(rows, new, changes, strict=True)])
    return rows


async def create_case(conn: Conn, form: FormDefinition, case: NewCase) -> case_rows.CaseRow:
    return (await create_cases(conn, form, [case]))[0]


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    keys = sorted(set(old) | set(new))
    return [FieldChange(field=k, old=old.get(k), new=new.get(k))
            for k in keys if old.get(k) != new.get(k)]


async def load_locked(conn: Conn, case_id: uuid.UUID
                      ) -> tuple[case_rows.CaseRow, FormDefinition] | None:
    """The case, locked until commit, and its form; None if there is no such case.

    The lock comes first, so concurrent updates of one case each build on the other's.
    """
    current = await case_rows.get_case(conn, case_id, lock=True)
    if current is None:
        return None
    form = await form_rows.get_form(conn, current.form_id)
    assert form is not None  # cases are deleted with their form
    return current, form


# Files taken out of a case. A file field may be patched to null or to the part of its list to
# keep (entries or their ids); a file no longer listed is deleted with its bytes in the same
# transaction, so its signed URLs and GET /api/files/{id} answer 404 from the commit on.

def _kept_files(form: FormDefinition, current: dict[str, Any], patch: dict[str, Any]
                ) -> tuple[dict[str, Any], dict[str, Any], list[FieldError]]:
    """(file fields patched to a sublist of their files, the rest of the patch, errors)."""
    kept: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    errors: list[FieldError] = []
    for key, value in patch.items():
        f = form.field(key)
        if f is None or f.type != FieldType.FILE or not isinstance(value, list) or not value:
            rest[key] = value
            continue
        held = {item["id"]: item for item in current.get(key) or [] if isinstance(item, dict)}
        ids = [item.get("id") if isinstance(item, dict) else item for item in value]
        if all(isinstance(i, str) and i in held for i in ids):
            kept[key] = [held[i] for i in dict.fromkeys(ids)]
        else:
            errors.append(FieldError(
                field=key, code="wrong_type",
                message="a file field takes null or a list of files it already holds (the rest "
                        "are deleted); upload files with POST /api/cases/{id}/files/{field}"))
    return kept, rest, errors


def check_patch(form: FormDefinition, current: case_rows.CaseRow,
                patch: dict[str, Any]) -> dict[str, Any]:
    """A patch from the admin API, checked against the form: the values to store.

    Mandatory fields cannot be emptied, and a file field can only keep files it holds.
    Raises ValidationFailed with every problem.
    """
    kept, rest, file_errors = _kept_files(form, current.data, patch)
    clean, errors = validate_case_data(form, rest, check_mandatory=True, partial=True)
    if file_errors or errors:
        raise ValidationFailed([*file_errors, *errors])
    return {**clean, **kept}


@dataclass(frozen=True)
class Change:
    """A case update worked out before anything is written; `apply` writes it."""

    case: case_rows.CaseRow  # as it is now
    data: dict[str, Any]
    status: str
    changes: list[FieldChange]  # none: the update changes nothing
    form: FormDefinition
    # The file fields whose list changes, with the files each still lists.
    file_lists: dict[str, list[uuid.UUID]]


def _file_lists(form: FormDefinition, changes: list[FieldChange]) -> dict[str, list[uuid.UUID]]:
    lists: dict[str, list[uuid.UUID]] = {}
    for change in changes:
        f = form.field(change.field)
        if f is not None and f.type == FieldType.FILE:
            lists[f.id] = [uuid.UUID(item["id"]) for item in change.new or []
                           if isinstance(item, dict)]
    return lists


def plan_update(current: case_rows.CaseRow, form: FormDefinition, patch: dict[str, Any],
                status: str | None) -> Change:
    """What setting `patch` (a null clears a field) and `status` would change.

    `patch` is already checked, by whichever rules its source follows (check_patch for the
    admin API). Pure; raises ValidationFailed for a status the form does not have.
    """
    new_status = current.status if status is None else _check_status(form, status)
    data = {k: v for k, v in {**current.data, **patch}.items() if v is not None}
    changes = _diff(current.data, data)
    if new_status != current.status:
        changes.append(FieldChange(field="status", old=current.status, new=new_status))
    return Change(case=current, data=data, status=new_status, changes=changes,
                  form=form, file_lists=_file_lists(form, changes))


async def apply(conn: Conn, change: Change, author: str, *, automation_depth: int = 0,
                source_automation_id: uuid.UUID | None = None,
                causation_id: str | None = None) -> case_rows.CaseRow:
    """Write a planned update: the row, its history entry and case.updated; files no longer
    listed are deleted. A change of nothing writes and announces nothing.

    A change made by an automation carries its id and depth, so the dispatcher can refuse to loop.
    """
    if not change.changes:
        return change.case
    row = await case_rows.update_case(conn, change.case.id, change.status, change.data)
    for field_id, listed in change.file_lists.items():
        await file_rows.delete_files_except(conn, row.id, field_id, listed)
    await case_rows.insert_history(conn, [(row.id, row.version, author,
                                           [c.model_dump(mode="json") for c in change.changes])])
    await timers.on_changed(conn, change.form, row, {c.field for c in change.changes})
    await outbox_rows.insert_outbox(conn, [_announce(
        CASE_UPDATED, row, change.changes, author, form_revision=change.form.revision,
        previous_status=change.case.status, causation_id=causation_id,
        automation_depth=automation_depth, source_automation_id=source_automation_id)])
    return row


async def delete_case(conn: Conn, case_id: uuid.UUID, *, author: str) -> None:
    current = found(await case_rows.get_case(conn, case_id, lock=True),
                    f"case {case_id} not found")
    await case_rows.delete_case(conn, case_id)
    await outbox_rows.insert_outbox(conn, [_announce(CASE_DELETED, current, [], author,
                                                     previous_status=current.status)])


@dataclass(frozen=True, slots=True)
class CasePage:
    """A page of a form's cases, newest first, read in one snapshot with their total."""

    form: FormDefinition
    cases: list[case_rows.CaseRow]
    total: int
    # The last case number of a full page (pass it as `before`); None after a shorter one.
    next_before: int | None


async def page_of_cases(conn: Conn, form_id: str, *, status: str | None, limit: int,
                        before: int | None) -> CasePage:
    """For the admin API and the console alike (RecordNotFound for no such form)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        form = await load_form(conn, form_id)
        rows = await case_rows.list_cases(conn, form.id, status=status, limit=limit,
                                          before_number=before)
        total = await case_rows.count_cases(conn, form.id, status)
    return CasePage(form, rows, total, rows[-1].case_number if len(rows) == limit else None)

