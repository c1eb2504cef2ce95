"""The delivery engine on the dispatcher's /metrics.

Attempts are counted where they are sent (this process's figures). The backlog, paused
endpoints and disabled automations are the whole engine's, read from Postgres every
CASEWIRE_METRICS_REFRESH_SECONDS: every dispatcher replica reports the same values, so
aggregate those with `max`, not `sum`.
"""

import weakref
from collections import Counter as Tally
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import get_args

import asyncpg
import structlog
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.dispatcher import repo
from services.dispatcher.in_flight import InFlight
from services.dispatcher.sender import Sent
from shared.event_payloads import Verdict
from shared.service import POOL, SETTINGS, CleanupCtx, task_ctx
from shared.tasks import every

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
# From the case change that fired a delivery to its receiver's 2xx, retries and waits included.
DELIVERED_AFTER = Histogram(
    "casewire_delivery_seconds_since_case_change",
    "From the case change to the successful attempt's answer, per automation",
    ["automation_id"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0,
             86400.0))
OLDEST_WAITING = Gauge("casewire_delivery_oldest_due_seconds",
                       "How long the oldest delivery due and not yet handed out has waited, "
                       "per automation (all dispatchers')", ["automation_id"])
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


def record(sent: Sent, automation_id: str, case_changed_at: datetime | None) -> None:
    """One attempt's outcome and how long its request took; for a success, how long since the
    case change that fired it (if a case change did)."""
    ATTEMPTS.labels(sent.verdict).inc()
    ATTEMPT_SECONDS.observe(sent.attempt.duration_ms / 1000)
    if sent.verdict == "succeeded" and case_changed_at is not None:
        DELIVERED_AFTER.labels(automation_id).observe(
            (datetime.now(UTC) - case_changed_at).total_seconds())


class EndpointLimits(Collector):
    """Each endpoint's adaptive limit and requests in flight, read at scrape time from the
    dispatchers of this process (tests run several): nothing on the attempts' path."""

    def __init__(self) -> None:
        self.sources: weakref.WeakSet[InFlight] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        limits, in_flight = Tally[str](), Tally[str]()
        for source in list(self.sources):
            for automation_id, limit in list(source.limits.items()):
                limits[str(automation_id)] += limit.current
                in_flight[str(automation_id)] += limit.in_flight
        yield _family("casewire_endpoint_concurrency_limit",
                      "Requests in flight this process allows an endpoint now (adaptive)", limits)
        yield _family("casewire_endpoint_requests_in_flight",
                      "Requests in flight to an endpoint from this process", in_flight)


def _family(name: str, documentation: str, values: Tally[str]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["automation_id"])
    for automation_id, value in sorted(values.items()):
        family.add_metric([automation_id], value)
    return family


ENDPOINT_LIMITS = EndpointLimits()
REGISTRY.register(ENDPOINT_LIMITS)


async def refresh(pool: asyncpg.Pool) -> None:
    """Read the engine's state once and set the gauges."""
    for state, count in (await repo.waiting_deliveries(pool)).items():
        WAITING.labels(state).set(count)
    oldest = await repo.oldest_due(pool)
    OLDEST_WAITING.clear()  # an automation with nothing due has no series
    for automation_id, seconds in oldest.items():
        OLDEST_WAITING.labels(str(automation_id)).set(seconds)
    PAUSED.set(await repo.paused_endpoints(pool))
    for reason, count in (await repo.engine_disabled_automations(pool)).items():
        DISABLED.labels(reason).set(count)


async def refresh_forever(pool: asyncpg.Pool, seconds: float) -> None:
    # Through a database outage the gauges keep their last values.
    await every(seconds, lambda: refresh(pool), "delivery_metrics_not_refreshed")


# The background task that keeps the engine's gauges current, as long as the app runs.
refresh_ctx: CleanupCtx = task_ctx("delivery_metrics", lambda app: refresh_forever(
    app[POOL], app[SETTINGS].metrics_refresh_seconds))
