"""An endpoint's health as its attempts fail: the circuit breaker, and automations disabled
for good reasons.

A failure counts against the circuit only if its attempt was handed out under the circuit's
current state: the attempts in flight as it opened (or as its probe went out) fail for the
same outage and must neither open it again nor lengthen its pause. A 429 while the
dispatcher's limit was above 1 is throttling, which that limit answers. Enough failures in a
row open the circuit for a cool-down (doubling each time in a row); a failed probe opens it
again; an automation answered 410 Gone, or whose deliveries all failed for days, is disabled.
"""

import uuid
from datetime import datetime

import structlog

from services.casestore import audit, operational
from services.casestore.actors import system
from services.casestore.repo import Conn
from services.casestore.repo import outbox as outbox_rows
from services.casestore.repo import schedule as schedule_rows
from shared.event_payloads import AutomationDisabled, DeliveryAttempted
from shared.events import AUTOMATION_DISABLED, new_event
from shared.schedule import FAILING_REASON_PREFIX, GONE_REASON, cooldown, disable_after
from shared.settings import Settings

log = structlog.get_logger(__name__)


async def count_failure(conn: Conn, report: DeliveryAttempted, handed_out_at: datetime,
                         settings: Settings) -> None:
    """Count a failed attempt against its endpoint's circuit, if it was handed out under the
    circuit's current state (the attempts in flight as it opened, or as its probe went out,
    fail for the same outage and must neither open it again nor lengthen its pause) and is no
    mere throttling."""
    if report.verdict == "gone":
        await disable(conn, report.automation_id, GONE_REASON)
        return
    before = await schedule_rows.health(conn, report.automation_id) or schedule_rows.HealthRow()
    counts = (before.state_since is None or handed_out_at >= before.state_since) \
        and not _throttled(report)
    # A failed probe opens it again at once; otherwise enough failures in a row do. An open
    # circuit only ever reopens through its probe.
    trips = counts and (before.state == "half_open" or (
        before.state == "closed"
        and before.consecutive_failures + 1 >= settings.breaker_failures))
    after = await schedule_rows.record_failure(
        conn, report.automation_id, counts,
        cooldown(before.times_opened + 1, settings) if trips else None)
    if trips:
        log.warning("endpoint_paused", automation_id=str(report.automation_id),
                    consecutive_failures=after["consecutive_failures"])
        await operational.emit(conn, "endpoint.paused", {
            "automation_id": str(report.automation_id),
            "consecutive_failures": after["consecutive_failures"],
            "paused_seconds": cooldown(before.times_opened + 1, settings),
            "last_status": report.attempt.response_status, "last_error": report.attempt.error},
            about=report.automation_id)
    failing_for = after["failing_for"]
    if failing_for is not None and failing_for.total_seconds() >= disable_after(settings):
        await disable(conn, report.automation_id,
                      f"{FAILING_REASON_PREFIX}{settings.disable_after_days:g} days")


def _throttled(report: DeliveryAttempted) -> bool:
    """A 429 while the dispatcher's limit was still above 1: the endpoint is asking for less,
    which the limit gives it (services/dispatcher/limits.py); pausing it would idle it."""
    return report.attempt.response_status == 429 and (report.limit or 1) > 1


async def disable(conn: Conn, automation_id: uuid.UUID, reason: str) -> None:
    """Disable the automation, say so on the bus and in the log; its deliveries wait."""
    row = await schedule_rows.disable_automation(conn, automation_id, reason)
    if row is None:
        return  # disabled already
    await outbox_rows.insert_outbox(conn, [new_event(
        AUTOMATION_DISABLED, AutomationDisabled(automation_id=automation_id,
                                                form_id=row["form_id"] or "", reason=reason),
        form_id=row["form_id"])])
    await audit.record(conn, system(reason), "automation.disabled", "automation",
                       str(automation_id), before={"enabled": True},
                       after={"enabled": False, "disabled_reason": reason})
    await operational.emit(conn, "automation.disabled", {
        "automation_id": str(automation_id), "form_id": row["form_id"], "reason": reason,
        "by": "system"}, about=automation_id)
    log.warning("automation_disabled", automation_id=str(automation_id), reason=reason)
