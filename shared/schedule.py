"""When a delivery's next attempt is due, and when an unhealthy endpoint may be tried again.

Every wait of Casewire's own is multiplied by CASEWIRE_RETRY_TIME_SCALE, so tests run the whole
27-hour extended schedule in seconds through the same code; a receiver's Retry-After is its
own and is kept as it asked.
"""

import random
from typing import Literal

from shared.settings import Settings

Schedule = Literal["standard", "extended"]

# Svix's schedule: the wait before attempts 2 to 8 (about 27 hours in all), +-20% jitter.
EXTENDED_WAITS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
EXTENDED_ATTEMPTS = len(EXTENDED_WAITS) + 1
JITTER = 0.2
# Why the engine disables an automation (its `disabled_reason`); the dispatcher's metrics
# count engine-disabled automations by these texts, so they are written only from here.
GONE_REASON = "the receiver answered 410 Gone"
FAILING_REASON_PREFIX = "every delivery failed for "


def attempts_allowed(schedule: Schedule, configured: int) -> int:
    """The seed's 1 to 3 attempts; the extended schedule has its own eight."""
    return EXTENDED_ATTEMPTS if schedule == "extended" else configured


def retry_delay(schedule: Schedule, attempts_made: int, retry_after: float | None,
                settings: Settings) -> float:
    """Seconds from now until the next attempt, after `attempts_made` attempts failed."""
    if retry_after is not None:  # already capped by CASEWIRE_RETRY_AFTER_CAP_SECONDS
        return retry_after
    if schedule == "extended":
        base = EXTENDED_WAITS[min(attempts_made, len(EXTENDED_WAITS)) - 1]
        wait = base * random.uniform(1 - JITTER, 1 + JITTER)
    else:
        # Full jitter, with a floor so a retry never comes right on the heels of a failure.
        ceiling = min(settings.retry_backoff_max_seconds,
                      settings.retry_backoff_seconds * 2 ** (attempts_made - 1))
        wait = random.uniform(min(settings.retry_backoff_seconds / 2, ceiling), ceiling)
    return float(wait * settings.retry_time_scale)


def cooldown(times_opened: int, settings: Settings) -> float:
    """How long a tripped circuit stays open: doubling each time in a row, up to an hour."""
    seconds = min(3600.0, settings.breaker_cooldown_seconds * 2.0 ** max(0, times_opened - 1))
    return seconds * settings.retry_time_scale


def disable_after(settings: Settings) -> float:
    """An automation whose deliveries all failed this long is disabled."""
    return settings.disable_after_days * 86400 * settings.retry_time_scale
