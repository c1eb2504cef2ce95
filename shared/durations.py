"""ISO 8601 durations (`P1W`, `-P1D`, `PT2H30M`) and moving a time by one, on the wall clock.

Days and weeks move the local date and keep the time of day, across daylight-saving changes
(a reminder "one day before, at 08:00" stays at 08:00); hours, minutes and seconds are exact.
Years and months are not accepted: their length depends on where they start.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator

PATTERN = re.compile(
    r"^(-)?P(?:(\d{1,5})W)?(?:(\d{1,6})D)?(?:T(?:(\d{1,7})H)?(?:(\d{1,9})M)?(?:(\d{1,10})S)?)?$")


@dataclass(frozen=True)
class Shift:
    """A signed duration: whole days on the calendar, seconds on the clock."""

    days: int = 0
    seconds: int = 0

    def __add__(self, other: "Shift") -> "Shift":
        return Shift(self.days + other.days, self.seconds + other.seconds)

    def __mul__(self, times: int) -> "Shift":
        return Shift(self.days * times, self.seconds * times)

    @property
    def positive(self) -> bool:
        return self.days >= 0 and self.seconds >= 0 and (self.days, self.seconds) != (0, 0)

    def after(self, when: datetime, zone: ZoneInfo) -> datetime:
        """`when` moved by this shift: days in `zone`'s calendar, then seconds exactly."""
        local = when.astimezone(zone)
        moved = (local.replace(tzinfo=None) + timedelta(days=self.days)).replace(tzinfo=zone)
        # Aware arithmetic in one zone is wall-clock arithmetic: exact seconds need UTC.
        return moved.astimezone(UTC) + timedelta(seconds=self.seconds)


def parse(text: str) -> Shift:
    match = PATTERN.match(text)
    if match is None or not any(match.groups()[1:]) or text.endswith("T"):
        raise ValueError(f"'{text}' is not an ISO 8601 duration of weeks, days, hours, minutes "
                         "or seconds (e.g. P1D, -PT2H, P1W)")
    sign, weeks, days, hours, minutes, seconds = match.groups()
    factor = -1 if sign else 1
    total_days = int(weeks or 0) * 7 + int(days or 0)
    total_seconds = int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    return Shift(factor * total_days, factor * total_seconds)


def _valid(text: str) -> str:
    parse(text)
    return text


def _positive(text: str) -> str:
    if not parse(text).positive:
        raise ValueError(f"'{text}' must be longer than zero")
    return text


Duration = Annotated[str, AfterValidator(_valid)]
PositiveDuration = Annotated[str, AfterValidator(_positive)]


def zone(name: str) -> ZoneInfo:
    """An IANA time zone by name; ValueError if there is none."""
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"'{name}' is not an IANA time zone (e.g. Europe/Stockholm)") from exc
