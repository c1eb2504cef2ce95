"""Operational events: what an operator must hear about, sent to one configured URL.

`PUT /api/operational-webhook` sets the URL and the events it takes; Casewire then sends each
of these, as it happens, as Standard Webhooks signed JSON `{"type", "timestamp", "data"}`:

- `automation.disabled` (by the delivery engine: a 410, or days of failures; or by a person),
  `automation.enabled`;
- `endpoint.paused` (its circuit opened), `endpoint.resumed` (a probe succeeded);
- `delivery.exhausted` (a delivery ended failed: its last attempt failed, or a final answer);
- `dead_letter.added` (the dead-letter queue grew; casestore looks every
  CASEWIRE_PIPELINE_METRICS_SECONDS);
- `outbox.parked` (an event the broker refused for good).

Each is a delivery of the webhook's automation (of kind 'operational', of no form), written
in the transaction of what it tells, so the same durable engine retries it (the extended
schedule: about a day), logs it, and can replay it. Nothing about the operational webhook
itself is sent to it: its own failures, pauses or exhaustion would otherwise feed on
themselves.
"""

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from services.casestore.repo import Conn
from services.casestore.repo import operational as operational_rows
from services.casestore.repo.schedule import wake_scheduler
from shared.logging import bound_correlation_id
from shared.schedule import EXTENDED_ATTEMPTS

EventType = Literal["automation.disabled", "automation.enabled", "endpoint.paused",
                    "endpoint.resumed", "delivery.exhausted", "dead_letter.added",
                    "outbox.parked"]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)


async def emit(conn: Conn, event: EventType, data: dict[str, Any], *,
               about: uuid.UUID | None = None) -> uuid.UUID | None:
    """Send `event` (in the caller's transaction), if the operational webhook is enabled and
    takes it, and it is not `about` the operational webhook itself; its delivery's id."""
    listening = await operational_rows.listening(conn)
    if listening is None or event not in listening.events or about == listening.automation_id:
        return None
    delivery_id = uuid.uuid4()
    payload = {"type": event, "timestamp": datetime.now(UTC).isoformat(), "data": data}
    await operational_rows.insert_delivery(conn, listening.automation_id, listening.name,
                                           delivery_id, payload, bound_correlation_id(),
                                           EXTENDED_ATTEMPTS)
    await wake_scheduler(conn)
    return delivery_id
