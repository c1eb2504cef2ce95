"""Every write of a form, for the admin API and the console alike.

Each runs in the caller's transaction and writes its audit row and queues form.changed (so
ingest refreshes its cache) with the change: none of the three happens without the others.
"""

from typing import Any

import asyncpg

from services.casestore import audit
from services.casestore.actors import Actor
from services.casestore.errors import Conflict, RecordNotFound, found
from services.casestore.repo import Conn
from services.casestore.repo import deliveries as delivery_rows
from services.casestore.repo import forms as form_rows
from services.casestore.repo import outbox as outbox_rows
from shared.event_payloads import FormChanged, FormChangeKind
from shared.events import FORM_CHANGED, new_event
from shared.forms import FormDefinition


def _missing(form_id: str) -> str:
    return f"form '{form_id}' not found"


async def announce_form(conn: Conn, form_id: str, change: FormChangeKind) -> None:
    """Queue form.changed in the caller's transaction so ingest refreshes its cache."""
    await outbox_rows.insert_outbox(conn, [new_event(
        FORM_CHANGED, FormChanged(form_id=form_id, change=change), form_id=form_id)])


async def load_form(conn: Conn, form_id: str) -> FormDefinition:
    return found(await form_rows.get_form(conn, form_id), _missing(form_id))


def _audited(form: FormDefinition) -> dict[str, Any]:
    return form.model_dump(mode="json")


async def create(conn: Conn, actor: Actor, form: FormDefinition) -> None:
    """Conflict if a form has its id already."""
    try:
        await form_rows.insert_form(conn, form)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"form '{form.id}' already exists") from exc
    await announce_form(conn, form.id, "created")
    await audit.record(conn, actor, "form.created", "form", form.id, after=_audited(form))


async def replace(conn: Conn, actor: Actor, form: FormDefinition) -> None:
    """The stored form with `form.id` becomes `form`."""
    # Read without a lock: FOR SHARE (all repo/forms.py offers besides the delete's lock)
    # would deadlock two saves of one form. A save racing this one can only make the row's
    # `before` miss the other's change; the update itself is exact.
    before = await load_form(conn, form.id)
    if not await form_rows.update_form(conn, form):
        raise RecordNotFound(_missing(form.id))
    await announce_form(conn, form.id, "updated")
    await audit.record(conn, actor, "form.updated", "form", form.id, before=_audited(before),
                       after=_audited(form))


async def delete(conn: Conn, actor: Actor, form_id: str, *, with_cases: bool) -> None:
    """Delete the form; with its cases (their history, files and timers) only if asked to,
    else Conflict while it has any. Its automations go with it, their deliveries still
    waiting fail, and the delivery log stays."""
    cases = await form_rows.lock_form_for_delete(conn, form_id)
    if cases is None:
        raise RecordNotFound(_missing(form_id))
    if cases and not with_cases:
        raise Conflict(f"form '{form_id}' still has {cases} case(s); delete them first, or "
                       "delete the form with them (?with_cases=true)")
    before = await load_form(conn, form_id)
    await delivery_rows.fail_waiting_deliveries_of_form(conn, form_id)
    await form_rows.delete_form(conn, form_id)
    await announce_form(conn, form_id, "deleted")
    await audit.record(conn, actor, "form.deleted", "form", form_id, before=_audited(before))
