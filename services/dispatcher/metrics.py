"""The delivery engine on the dispatcher's /metrics.

Attempts are counted where they are sent (this process's figures). The backlog, paused
endpoints and disabled automations are the whole engine's, read from Postgres every
CASEWIRE_METRICS_REFRESH_SECONDS: every dispatcher replica reports the same values, so
aggregate those with `max`, not `sum`.
"""

import asyncio
from typing import get_args

import asyncpg
import structlog
from prometheus_client import Counter, Gauge, Histogram

from services.dispatcher import repo
from services.dispatcher.sender import Sent
from shared.events import Verdict
from shared.service import POOL, SETTINGS, CleanupCtx, task_ctx

log = structlog.get_logger(__name__)

ATTEMPTS = Counter("casewire_delivery_attempts_total",
                   "Outgoing webhook attempts sent by this process, by verdict", ["verdict"])
# From a receiver on the same network (10 ms) to the longest timeout an automation may set.
ATTEMPT_SECONDS = Histogram(
    "casewire_delivery_attempt_seconds", "Duration of one outgoing webhook attempt",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
IN_FLIGHT = Gauge("casewire_delivery_requests_in_flight",
                  "Outgoing webhook attempts this process is sending now")
REPORTED_WITH_REQUEST = Counter(
    "casewire_first_attempts_reported_with_request_total",
    "First attempts that ended before their delivery's request went out, and went to "
    "casestore in its message (one message and one transaction fewer)")
WAITING = Gauge("casewire_deliveries_waiting",
                "Deliveries on their way, by state (all dispatchers' and endpoints')", ["state"])
PAUSED = Gauge("casewire_endpoints_paused",
               "Enabled automations whose endpoint's circuit is open or half open")
DISABLED = Gauge("casewire_automations_disabled",
                 "Automations the delivery engine disabled: gone (410) or failing (for days)",
                 ["reason"])

# Every label value exists from the start, so a rate() or an alert sees 0, not no series.
for _verdict in get_args(Verdict):
    ATTEMPTS.labels(_verdict)


def record(sent: Sent) -> None:
    """One attempt's outcome and how long its request took."""
    ATTEMPTS.labels(sent.verdict).inc()
    ATTEMPT_SECONDS.observe(sent.attempt.duration_ms / 1000)


async def refresh(pool: asyncpg.Pool) -> None:
    """Read the engine's state once and set the gauges."""
    for state, count in (await repo.waiting_deliveries(pool)).items():
        WAITING.labels(state).set(count)
    PAUSED.set(await repo.paused_endpoints(pool))
    for reason, count in (await repo.engine_disabled_automations(pool)).items():
        DISABLED.labels(reason).set(count)


async def refresh_forever(pool: asyncpg.Pool, every: float) -> None:
    while True:
        try:
            await refresh(pool)
        except Exception:
            # A database outage or a bug alike: the gauges keep their last values, and the
            # task lives on to try again (a dead one would leave them stale unnoticed).
            log.exception("delivery_metrics_not_refreshed")
        await asyncio.sleep(every)


# The background task that keeps the engine's gauges current, as long as the app runs.
refresh_ctx: CleanupCtx = task_ctx("delivery_metrics", lambda app: refresh_forever(
    app[POOL], app[SETTINGS].metrics_refresh_seconds))
