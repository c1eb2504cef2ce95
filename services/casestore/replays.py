"""Replays of finished deliveries, for the admin API and the console alike.

A replay sends again what a receiver already got (or never accepted), which cannot be undone,
so each request writes its one audit row in the transaction that makes the deliveries due.
"""

import uuid
from typing import Any

from services.casestore import audit
from services.casestore.actors import Actor
from services.casestore.automation_writes import NO_AUTOMATION
from services.casestore.errors import Conflict, found
from services.casestore.repo import Conn
from services.casestore.repo import automations as automation_rows
from services.casestore.repo import deliveries as delivery_rows
from services.casestore.repo import schedule as schedule_rows

NO_DELIVERY = "no delivery has that id"


async def replay_delivery(conn: Conn, actor: Actor,
                          delivery_id: uuid.UUID) -> delivery_rows.DeliveryRow:
    """Due again with the same webhook-id; Conflict if it is still on its way or its
    automation is gone."""
    row = found(await delivery_rows.get_delivery(conn, delivery_id), NO_DELIVERY)
    if row.waiting:
        raise Conflict("the delivery is still on its way; replay it once it has finished")
    if not await delivery_rows.replay_deliveries(
            conn, delivery_rows.DeliveryFilter(delivery_id=row.id)):
        raise Conflict("its automation no longer exists")
    await schedule_rows.wake_scheduler(conn)
    about = {"automation_id": str(row.automation_id), "webhook_id": row.webhook_id}
    await audit.record(conn, actor, "delivery.replayed", "delivery", str(row.id),
                       before={**about, "state": row.state}, after={**about, "state": "pending"})
    return row


async def replay_automation(conn: Conn, actor: Actor, where: delivery_rows.DeliveryFilter) -> int:
    """Every finished delivery of `where.automation_id` that `where` matches; how many."""
    assert where.automation_id is not None
    found(await automation_rows.get_automation(conn, where.automation_id), NO_AUTOMATION)
    replayed = await delivery_rows.replay_deliveries(conn, where)
    await schedule_rows.wake_scheduler(conn)
    await audit.record(conn, actor, "automation.replayed", "automation",
                       str(where.automation_id), after={**_window(where), "replayed": replayed})
    return replayed


def _window(where: delivery_rows.DeliveryFilter) -> dict[str, Any]:
    """Which deliveries the request asked for, as JSON (the empty parts left out)."""
    return {name: value for name, value in (
        ("states", list(where.states) if where.states else None),
        ("since", where.since.isoformat() if where.since else None),
        ("until", where.until.isoformat() if where.until else None),
        ("case_id", str(where.case_id) if where.case_id else None),
        ("webhook_id", where.webhook_id[0] if where.webhook_id else None),
        ("statuses", [list(r) if r else None for r in where.statuses]
         if where.statuses else None)) if value is not None}
