"""Case writes: the row, its history entry and its outbox event commit in one transaction."""

import uuid
from typing import Any

import asyncpg

from services.casestore import repo
from services.casestore.errors import RecordNotFound, ValidationFailed
from shared.events import (
    CASE_CREATED,
    CASE_DELETED,
    CASE_UPDATED,
    CaseChanged,
    Envelope,
    FieldChange,
    new_event,
)
from shared.forms import FieldError, FormDefinition, validate_case_data


def case_json(row: asyncpg.Record) -> dict[str, Any]:
    """A case row as the API shows it."""
    return {
        "id": str(row["id"]), "form_id": row["form_id"], "case_number": row["case_number"],
        "status": row["status"], "data": row["data"], "creator": row["creator"],
        "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
        "version": row["version"],
    }


def _announce(type_: str, row: asyncpg.Record, changes: list[FieldChange], author: str,
              *, previous_status: str | None = None, skip_triggers: bool = False,
              causation_id: str | None = None, automation_depth: int = 0,
              source_automation_id: uuid.UUID | None = None) -> Envelope:
    payload = CaseChanged(
        case_id=row["id"], case_number=row["case_number"], status=row["status"],
        previous_status=previous_status, data=row["data"], creator=row["creator"],
        created_at=row["created_at"], updated_at=row["updated_at"], version=row["version"],
        changes=changes, author=author, skip_triggers=skip_triggers,
        automation_depth=automation_depth, source_automation_id=source_automation_id)
    return new_event(type_, payload, form_id=row["form_id"], case_id=row["id"],
                     causation_id=causation_id)


def _check_status(form: FormDefinition, status: str | None) -> str:
    if status is None:
        return form.initial_status
    if status not in form.statuses:
        raise ValidationFailed([FieldError(
            field="status", code="value_not_allowed",
            message=f"expected one of: {', '.join(form.statuses)}")])
    return status


async def create_case(conn: repo.Conn, form: FormDefinition, data: dict[str, Any], *,
                      creator: str, case_id: uuid.UUID | None = None, status: str | None = None,
                      skip_triggers: bool = False, causation_id: str | None = None
                      ) -> asyncpg.Record:
    """Insert a case with the form's next number; `data` must already be validated."""
    initial = _check_status(form, status)
    number = await repo.next_case_number(conn, form.id)
    row = await repo.insert_case(conn, case_id or uuid.uuid4(), form.id, number, initial, data,
                                 creator)
    changes = [FieldChange(field=k, new=v) for k, v in data.items()]
    await repo.insert_history(conn, row["id"], 1, creator,
                              [c.model_dump(mode="json") for c in changes])
    await repo.insert_outbox(conn, [_announce(CASE_CREATED, row, changes, creator,
                                              skip_triggers=skip_triggers,
                                              causation_id=causation_id)])
    return row


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    keys = sorted(set(old) | set(new))
    return [FieldChange(field=k, old=old.get(k), new=new.get(k))
            for k in keys if old.get(k) != new.get(k)]


async def update_case(conn: repo.Conn, case_id: uuid.UUID, patch: dict[str, Any], *,
                      status: str | None, author: str, validated: bool = False,
                      automation_depth: int = 0, source_automation_id: uuid.UUID | None = None,
                      causation_id: str | None = None) -> asyncpg.Record:
    """Apply a partial update; a patch that changes nothing writes nothing and announces nothing.

    `validated`: the caller already checked `patch` against the form (and may set what only
    casestore itself writes, such as a file field's list). A change made by an automation
    carries its id and depth, so the dispatcher can refuse to loop.
    """
    current = await repo.get_case(conn, case_id, lock=True)
    if current is None:
        raise RecordNotFound(f"case {case_id} not found")
    form = await repo.get_form(conn, current["form_id"])
    assert form is not None  # cases are deleted with their form
    clean = patch
    if not validated:
        clean, errors = validate_case_data(form, patch, check_mandatory=True, partial=True)
        if errors:
            raise ValidationFailed(errors)
    new_status = _check_status(form, status) if status is not None else current["status"]
    data = {k: v for k, v in {**current["data"], **clean}.items() if v is not None}
    changes = _diff(current["data"], data)
    if new_status != current["status"]:
        changes.append(FieldChange(field="status", old=current["status"], new=new_status))
    if not changes:
        return current
    row = await repo.update_case(conn, case_id, new_status, data)
    await repo.insert_history(conn, case_id, row["version"], author,
                              [c.model_dump(mode="json") for c in changes])
    await repo.insert_outbox(conn, [_announce(
        CASE_UPDATED, row, changes, author, previous_status=current["status"],
        causation_id=causation_id, automation_depth=automation_depth,
        source_automation_id=source_automation_id)])
    return row


async def delete_case(conn: repo.Conn, case_id: uuid.UUID, *, author: str) -> None:
    current = await repo.get_case(conn, case_id, lock=True)
    if current is None:
        raise RecordNotFound(f"case {case_id} not found")
    await repo.delete_case(conn, case_id)
    await repo.insert_outbox(conn, [_announce(CASE_DELETED, current, [], author,
                                              previous_status=current["status"])])
