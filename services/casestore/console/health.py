"""The console's home page, "Health at a glance": per automation, deliveries per hour over the
last 24 hours by outcome and the p95 attempt duration; beside them the queue depths, the dead
letters and the outbox's oldest row."""

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aio_pika
from aiohttp import web

from services.casestore.console.charts import OUTCOMES, Bucket, hourly_chart, legend_swatch
from services.casestore.console.charts import summary as chart_summary
from services.casestore.console.render import page
from services.casestore.repo import stats as stats_rows
from shared.broker_topology import WORK_QUEUES, Names
from shared.service import AMQP, POOL, SETTINGS

routes = web.RouteTableDef()
HOURS = 24
QUEUE_READ_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class QueueDepth:
    name: str
    messages: int | None  # None: the broker could not tell
    consumers: int | None
    dead_letters: bool = False


async def _depth(connection: aio_pika.abc.AbstractRobustConnection, name: str,
                 dead: bool) -> QueueDepth:
    """A passive declare: reads the queue's counts without creating or changing it."""
    try:
        async with asyncio.timeout(QUEUE_READ_SECONDS):
            channel = await connection.channel()
            try:
                result = (await channel.declare_queue(name, passive=True)).declaration_result
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()
        return QueueDepth(name, result.message_count, result.consumer_count, dead)
    except (TimeoutError, aio_pika.exceptions.AMQPError, RuntimeError, OSError):
        return QueueDepth(name, None, None, dead)


async def queue_depths(request: web.Request) -> list[QueueDepth]:
    names = Names(request.config_dict[SETTINGS].name_prefix)
    connection = request.config_dict[AMQP]
    queues = [(names.queue(c), False) for c in WORK_QUEUES]
    return [await _depth(connection, name, dead)
            for name, dead in (*queues, (names.dead_letters, True))]


def hours(now: datetime) -> list[datetime]:
    """The last HOURS hours, the current one last."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]


def buckets_by_automation(counts: list[stats_rows.HourCount], hour_list: list[datetime]
                          ) -> dict[uuid.UUID, list[Bucket]]:
    by_key = {(c.automation_id, c.hour): c for c in counts}
    result: dict[uuid.UUID, list[Bucket]] = {}
    for automation in {c.automation_id for c in counts}:
        result[automation] = [
            Bucket(h, c.succeeded, c.failed, c.waiting) if (c := by_key.get((automation, h)))
            else Bucket(h) for h in hour_list]
    return result


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    hour_list = hours(datetime.now(UTC))
    async with request.config_dict[POOL].acquire() as conn:
        automations = await stats_rows.automation_overview(conn)
        counts = await stats_rows.deliveries_per_hour(conn, hour_list[0])
        times = await stats_rows.attempt_times(conn, hour_list[0])
        outbox = await stats_rows.outbox_backlog(conn)
    buckets = buckets_by_automation(counts, hour_list)
    rows = []
    for n, automation in enumerate(automations):
        series = buckets.get(automation.id) or [Bucket(h) for h in hour_list]
        rows.append({"automation": automation, "times": times.get(automation.id),
                     "totals": chart_summary(series),
                     "chart": hourly_chart(series, f"c{n}", automation.name)})
    legend = [(label, legend_swatch(kind, f"l{i}")) for i, (_, label, kind) in enumerate(OUTCOMES)]
    return page(request, "home.html", rows=rows, legend=legend, outbox=outbox,
                queues=await queue_depths(request), now=datetime.now(UTC))
