"""When a case's time triggers come due: pure computations, no database.

date_reached: the field's date (at `at` in the form's time zone, midnight if none) or datetime,
moved by `offset`; with `repeat`, again every `every`, `count` times or without end. Occurrences
already past when a timer is (re)computed are skipped: setting a date in the past fires nothing,
and a timer that fell due during downtime fires once, late, then moves to the next occurrence
still ahead instead of firing once per missed repetition.

lead_time_exceeded: `duration` after the case was created or entered its current status, unless
its status is one of `until_status`.
"""

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from shared.automation_rules import DateReached, LeadTimeExceeded
from shared.durations import Shift, parse

# A repetition every minute for ten years is 5 million steps: count them, don't walk them.
APPROXIMATE_STEPS = 64


def field_time(trigger: DateReached, value: object, zone: ZoneInfo) -> datetime | None:
    """The field's value as a point in time; None if it is empty or not a date."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 10:  # YYYY-MM-DD: a date field
            hours, minutes = (int(p) for p in (trigger.at or "00:00").split(":"))
            return datetime.combine(date.fromisoformat(value), time(hours, minutes),
                                    tzinfo=zone)
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def occurrence_at(trigger: DateReached, base: datetime, zone: ZoneInfo, k: int) -> datetime:
    shift = parse(trigger.offset)
    if k:
        assert trigger.repeat is not None
        shift = shift + parse(trigger.repeat.every) * k
    return shift.after(base, zone)


def _last_allowed(trigger: DateReached) -> int | None:
    """The last occurrence index, or None for no end."""
    if trigger.repeat is None:
        return 0
    return None if trigger.repeat.count is None else trigger.repeat.count - 1


def next_occurrence(trigger: DateReached, base: datetime, zone: ZoneInfo, now: datetime,
                    after: int = -1) -> tuple[datetime, int] | None:
    """The first occurrence after index `after` that is still ahead of `now`, with its index."""
    last = _last_allowed(trigger)
    k = after + 1
    if trigger.repeat is not None:
        step = _seconds(parse(trigger.repeat.every))
        behind = (now - occurrence_at(trigger, base, zone, k)).total_seconds()
        if behind > step * APPROXIMATE_STEPS:
            k += int(behind // step) - 2  # within a couple of steps of now
    while last is None or k <= last:
        due = occurrence_at(trigger, base, zone, k)
        if due > now:
            return due, k
        if trigger.repeat is None:
            return None
        k += 1
    return None


def _seconds(shift: Shift) -> float:
    return shift.days * 86400 + shift.seconds


def lead_time_due(trigger: LeadTimeExceeded, status: str, created_at: datetime,
                  status_entered_at: datetime, zone: ZoneInfo) -> datetime | None:
    """When the case is late, or None if it reached one of the statuses that end the wait."""
    if status in trigger.until_status:
        return None
    start = created_at if trigger.since == "created" else status_entered_at
    return parse(trigger.duration).after(start, zone)
