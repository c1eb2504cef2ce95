"""The timer scheduler: announces each due timer as `case.timer_due`, then moves or ends it;
and (re)builds the timers of an automation for the cases that existed before it.

Due timers are claimed with FOR UPDATE SKIP LOCKED, so any number of casestore replicas share
them and none fires twice. Each firing leaves through the outbox in the transaction that moves
its timer on. A timer that fell due while nothing ran fires once, late (its `late_by` says by
how much), and moves to its next occurrence still ahead: downtime never fires a repetition
more than once.
"""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from prometheus_client import Histogram

from services.casestore.repo import Conn
from services.casestore.repo import cases as case_rows
from services.casestore.repo import forms as form_rows
from services.casestore.repo import outbox as outbox_rows
from services.casestore.repo import timers as timer_rows
from services.casestore.timer_times import field_time, next_occurrence
from services.casestore.timers import NextTimer, SetTimer, for_new_case, move_or_end, timed
from shared.automation_rules import DateReached, LeadTimeExceeded, TimeTrigger
from shared.automations import AutomationDefinition
from shared.cases import CASE_COLUMNS, StoredCase
from shared.conditions import holds
from shared.event_payloads import CaseChanged, TimerDue
from shared.events import CASE_TIMER_DUE, Envelope, new_event
from shared.settings import Settings
from shared.tasks import wait_event

log = structlog.get_logger(__name__)

LATENESS = Histogram("casewire_timer_lateness_seconds",
                     "From a timer's due time to the transaction that fired it",
                     buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
                              86400.0))
SCHEDULER = "Casewire scheduler"
CASE_FIELDS = CASE_COLUMNS.split(", ")


def _trigger(definition: AutomationDefinition, index: int) -> TimeTrigger | None:
    when = definition.when
    trigger = when[index] if 0 <= index < len(when) else None
    return trigger if isinstance(trigger, DateReached | LeadTimeExceeded) else None


def _case(record: asyncpg.Record) -> StoredCase:
    return StoredCase(**{name: record[f"case_{name}"] for name in CASE_FIELDS})


def _after_firing(trigger: TimeTrigger, definition: AutomationDefinition, case: CaseChanged,
                  zone: ZoneInfo, now: datetime, form_id: str) -> NextTimer:
    """The timer's next occurrence, or None: it has fired for good."""
    if not isinstance(trigger, DateReached) or trigger.repeat is None or case.timer is None:
        return None
    if trigger.repeat.count is None and definition.if_ is not None \
            and not holds(definition.if_, case, form_id):
        return None  # repeats without a count last as long as the If holds
    base = field_time(trigger, case.data.get(trigger.field), zone)
    return None if base is None else next_occurrence(trigger, base, zone, now,
                                                    after=case.timer.occurrence)


class TimerScheduler:
    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self._pool = pool
        self._settings = settings
        self._stopping = asyncio.Event()

    async def fire_once(self) -> int:
        """Announce one batch of due timers; how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            due = await timer_rows.take_due(conn, self._settings.timer_batch)
            events: list[Envelope] = []
            timers: list[tuple[timer_rows.TimerKey, NextTimer]] = []
            lateness: list[float] = []
            definitions: dict[uuid.UUID, AutomationDefinition] = {}
            for record in due:
                key = (record["automation_id"], record["case_id"], record["trigger_index"])
                definition = definitions.get(key[0]) or definitions.setdefault(
                    key[0], AutomationDefinition.model_validate(record["definition"]))
                trigger = _trigger(definition, key[2])
                if trigger is None or not record["enabled"]:
                    timers.append((key, None))  # the automation changed under it
                    continue
                event, nxt = self._fire(record, trigger, definition)
                events.append(event)
                lateness.append((record["now"] - record["due_at"]).total_seconds())
                timers.append((key, nxt))
            await outbox_rows.insert_outbox(conn, events)
            await move_or_end(conn, timers)
        for late_by in lateness:  # committed
            LATENESS.observe(late_by)
        return len(due)

    @staticmethod
    def _fire(record: asyncpg.Record, trigger: TimeTrigger, definition: AutomationDefinition
              ) -> tuple[Envelope, NextTimer]:
        now, zone = record["now"], ZoneInfo(record["time_zone"])
        case = _case(record)
        timer = TimerDue(automation_id=record["automation_id"],
                         trigger_index=record["trigger_index"], trigger=trigger.event,
                         due_at=record["due_at"], occurrence=record["occurrence"],
                         late_by=round((now - record["due_at"]).total_seconds(), 3))
        payload = CaseChanged.from_row(case, SCHEDULER, form_revision=record["form_revision"],
                                       timer=timer)
        event = new_event(CASE_TIMER_DUE, payload, form_id=case.form_id, case_id=case.id)
        return event, _after_firing(trigger, definition, payload, zone, now, case.form_id)

    async def rebuild_once(self) -> int:
        """One batch of one automation's timers for the cases that existed before it."""
        async with self._pool.acquire() as conn, conn.transaction():
            job = await timer_rows.take_rebuild(conn)
            if job is None:
                return 0
            automation = timed(job["automation_id"],
                               AutomationDefinition.model_validate(job["definition"]))
            form = await form_rows.get_form(conn, job["form_id"])
            batch = self._settings.timer_batch
            rows = await timer_rows.cases_after(conn, job["form_id"], job["after_number"], batch)
            if form is not None and automation.triggers:
                await timer_rows.set_timers(conn, await self._timers(conn, rows, automation,
                                                                     form.zone))
            last = rows[-1]["case_number"] if len(rows) == batch else None
            await timer_rows.advance_rebuild(conn, job["automation_id"], last)
        return len(rows)

    @staticmethod
    async def _timers(conn: Conn, rows: list[asyncpg.Record], automation: Any,
                      zone: ZoneInfo) -> list[SetTimer]:
        cases = [case_rows.CaseRow.from_record(r) for r in rows]
        entered = await case_rows.status_entered(conn, [c.id for c in cases])
        now = datetime.now(UTC)
        return [timer for case in cases
                for timer in for_new_case(case, [automation], zone, now,
                                          status_entered_at=entered.get(case.id))]

    def stop(self) -> None:
        self._stopping.set()

    async def step(self) -> bool:
        """Fire one batch; rebuild one only once firing has caught up (a full batch means more
        may be due, and a due timer must not wait behind building timers for old cases).
        Whether there was anything to do."""
        fired = await self.fire_once()
        if fired >= self._settings.timer_batch:
            return True
        return fired + await self.rebuild_once() > 0

    async def run(self) -> None:
        """Until stopped: fire what is due, rebuild what waits, then sleep until the next due
        timer (at most CASEWIRE_TIMER_POLL_SECONDS, so timers set meanwhile are seen)."""
        while not self._stopping.is_set():
            try:
                busy = await self.step()
                pause = 0.0 if busy else await self._until_next()
            except Exception:
                log.exception("timer_scheduler_failed")
                pause = self._settings.timer_poll_seconds
            if pause > 0:
                await wait_event(self._stopping, pause)

    async def _until_next(self) -> float:
        soonest = await self._pool.fetchval("SELECT min(due_at) - now() FROM timers")
        poll = self._settings.timer_poll_seconds
        return poll if soonest is None else max(0.0, min(poll, soonest.total_seconds()))
