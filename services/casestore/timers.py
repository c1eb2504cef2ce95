"""Timers follow their cases: set, moved or removed in the same transaction as the change.

A new case gets one timer per time trigger of each enabled automation of its form (none if it
was created through `/skiptriggers`). A change of a date field moves that field's timers; a
change of status moves (or ends) lead-time timers. A deleted case takes its timers along (a
foreign key), as does a deleted automation; a created, changed or enabled automation has its
timers rebuilt for the existing cases in batches (timer_scheduler.py), a disabled one loses them.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from services.casestore.repo import Conn
from services.casestore.repo import automations as automation_rows
from services.casestore.repo import cases as case_rows
from services.casestore.repo import timers as timer_rows
from services.casestore.timer_times import field_time, lead_time_due, next_occurrence
from shared.automation_rules import DateReached, LeadTimeExceeded, TimeTrigger
from shared.automations import AutomationDefinition
from shared.forms import FormDefinition

SetTimer = tuple[timer_rows.TimerKey, datetime, int]
# A timer's next due time and occurrence, or None: it ends.
NextTimer = tuple[datetime, int] | None
# A form's revision changes with any change to it or its automations (migration 003), so the
# timed automations of (form, revision) never change: remember the last few hundred.
MAX_REMEMBERED = 500


@dataclass(frozen=True)
class Timed:
    """An enabled automation's time triggers, by their index in its `when`."""

    automation_id: uuid.UUID
    definition: AutomationDefinition
    triggers: tuple[tuple[int, TimeTrigger], ...]


def timed(automation_id: uuid.UUID, definition: AutomationDefinition) -> Timed:
    return Timed(automation_id, definition, tuple(
        (i, t) for i, t in enumerate(definition.when)
        if isinstance(t, DateReached | LeadTimeExceeded)))


_remembered: dict[tuple[str, int], list[Timed]] = {}


async def timed_automations(conn: Conn, form: FormDefinition) -> list[Timed]:
    key = (form.id, form.revision)
    found = _remembered.get(key)
    if found is None:
        rows = await automation_rows.list_automations(conn, form.id)
        found = [t for r in rows if r.enabled
                 and (t := timed(r.id, AutomationDefinition.model_validate(r.definition))).triggers]
        if len(_remembered) >= MAX_REMEMBERED:
            _remembered.clear()
        _remembered[key] = found
    return found


def first_timer(trigger: TimeTrigger, case: case_rows.CaseRow, zone: ZoneInfo, now: datetime,
                status_entered_at: datetime) -> NextTimer:
    """The trigger's next due time for the case as it is, from scratch; None: no timer."""
    if isinstance(trigger, LeadTimeExceeded):
        due = lead_time_due(trigger, case.status, case.created_at, status_entered_at, zone)
        return (due, 0) if due is not None else None
    base = field_time(trigger, case.data.get(trigger.field), zone)
    return next_occurrence(trigger, base, zone, now) if base is not None else None


def for_new_case(case: case_rows.CaseRow, automations: list[Timed], zone: ZoneInfo,
                 now: datetime, status_entered_at: datetime | None = None) -> list[SetTimer]:
    """Every timer of these automations for the case, as if it were new (for a case that
    existed before an automation, `status_entered_at` is when its status last changed)."""
    entered = status_entered_at or case.created_at
    return [((t.automation_id, case.id, i), *timer)
            for t in automations for i, trigger in t.triggers
            if (timer := first_timer(trigger, case, zone, now, entered)) is not None]


async def on_created(conn: Conn, form: FormDefinition, cases: list[case_rows.CaseRow],
                     skip_triggers: set[uuid.UUID]) -> None:
    automations = await timed_automations(conn, form)
    if not automations:
        return
    now = datetime.now(UTC)
    await timer_rows.set_timers(conn, [
        timer for case in cases if case.id not in skip_triggers
        for timer in for_new_case(case, automations, form.zone, now)])


def _moved(trigger: TimeTrigger, changed: set[str]) -> bool:
    """Whether a change of these fields (and `status`) moves the trigger's timer."""
    if isinstance(trigger, DateReached):
        return trigger.field in changed
    return "status" in changed


async def on_changed(conn: Conn, form: FormDefinition, case: case_rows.CaseRow,
                     changed: set[str]) -> None:
    automations = await timed_automations(conn, form)
    if not automations or case.skip_triggers:
        return
    now = datetime.now(UTC)
    timers: list[tuple[timer_rows.TimerKey, NextTimer]] = []
    for t in automations:
        for i, trigger in t.triggers:
            if not _moved(trigger, changed):
                continue
            if isinstance(trigger, LeadTimeExceeded) and trigger.since == "created" \
                    and case.status not in trigger.until_status:
                continue  # the wait since creation goes on
            timers.append(((t.automation_id, case.id, i),
                           first_timer(trigger, case, form.zone, now, status_entered_at=now)))
    await move_or_end(conn, timers)


async def move_or_end(conn: Conn, timers: list[tuple[timer_rows.TimerKey, NextTimer]]) -> None:
    """Each timer to its next due time, or, where it has none, removed."""
    await timer_rows.set_timers(conn, [(key, *nxt) for key, nxt in timers if nxt is not None])
    await timer_rows.remove_timers(conn, [key for key, nxt in timers if nxt is None])


async def automation_saved(conn: Conn, automation_id: uuid.UUID, definition: AutomationDefinition,
                           enabled: bool) -> None:
    """After an automation was created, changed, enabled or disabled: its timers are rebuilt for
    every existing case (in batches, by the timer scheduler), or removed."""
    if enabled and timed(automation_id, definition).triggers:
        await timer_rows.request_rebuild(conn, automation_id)
    else:
        await timer_rows.remove_automation_timers(conn, automation_id)
        await timer_rows.cancel_rebuild(conn, automation_id)
