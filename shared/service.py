"""What every service's app is built from: `new_app`, typed keys, resource contexts and
readiness (shared.serving runs it)."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol

import aiohttp
import asyncpg
import structlog
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from aiohttp.typedefs import Middleware

from shared import broker, broker_topology, metrics
from shared.bodies import BODY_TIMEOUT
from shared.clients import PROXIES, TrustedProxies
from shared.consumer import Consumer, Handler
from shared.db import create_pool
from shared.errors import ConfigurationError
from shared.outages import OutageGate, Probe
from shared.schema import SchemaCheck
from shared.settings import Settings
from shared.tasks import cancel_and_wait
from shared.web import ReadinessCheck, edge_middleware

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
AMQP = web.AppKey("amqp", AbstractRobustConnection)
PUBLISHER = web.AppKey("publisher", broker.Publisher)
# ingest calls casestore's API for the one write it needs (auth keys).
CASESTORE = web.AppKey("casestore", aiohttp.ClientSession)
SCHEMA = web.AppKey("schema", SchemaCheck)
# The consumer of the service's work queue (casestore and the dispatcher).
WORK_CONSUMER = web.AppKey("work_consumer", Consumer)

log = structlog.get_logger(__name__)
CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def new_app(service: str, settings: Settings, *middlewares: Middleware,
            **options: Any) -> web.Application:
    """The app every service starts from: its secrets checked, the edge middleware first (then
    `middlewares`), no server version in any answer, the settings under SETTINGS, and the
    resources every service has: its Postgres pool, broker connection and publisher, and the
    queue depths read for /metrics (the service adds its own cleanup contexts after these)."""
    require_secrets(settings)
    app = web.Application(middlewares=[edge_middleware(service), *middlewares], **options)
    app.on_response_prepare.append(server_header)
    app[SETTINGS] = settings
    app[SCHEMA] = SchemaCheck()
    app[BODY_TIMEOUT] = settings.body_timeout_seconds
    app[PROXIES] = TrustedProxies(settings.trusted_proxies)
    app.cleanup_ctx.extend([pool_ctx, amqp_ctx, publisher_ctx, queue_metrics_ctx])
    return app


async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
    app[POOL] = await create_pool(app[SETTINGS])
    yield
    await app[POOL].close()


async def amqp_ctx(app: web.Application) -> AsyncIterator[None]:
    app[AMQP] = await broker.connect(app[SETTINGS])
    yield
    await app[AMQP].close()


async def publisher_ctx(app: web.Application) -> AsyncIterator[None]:
    app[PUBLISHER] = await broker.Publisher.open(app[AMQP], app[SETTINGS])
    yield
    await app[PUBLISHER].close()


def consumer_ctx(consumer: str, handler_for: Callable[[web.Application], Handler],
                 probe_for: Callable[[web.Application], Probe] | None = None) -> CleanupCtx:
    """Consume the service's quorum work queue for as long as the app runs.

    `probe_for` tells whether the service's dependencies are up (by default: whether Postgres
    is): while they are not, messages are held instead of requeued (shared.outages).
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        channel = await app[AMQP].channel()
        await channel.set_qos(prefetch_count=settings.prefetch)
        names = broker_topology.Names(settings.name_prefix)
        queue = await broker_topology.declare_work_queue(channel, names, consumer,
                                                         settings.delivery_limit)
        gate = OutageGate((probe_for or db_probe)(app), retry_seconds=settings.outage_retry_seconds,
                          hold_seconds=settings.outage_hold_seconds)
        running = app[WORK_CONSUMER] = Consumer(queue, handler_for(app), gate,
                                                dead_letter_exchange=names.dead_letter)
        await running.start()
        yield
        await running.stop(settings.shutdown_grace_seconds)

    return ctx


async def casestore_client_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with aiohttp.ClientSession(
        base_url=settings.casestore_url, timeout=aiohttp.ClientTimeout(total=10),
        headers={"Authorization": f"Bearer {settings.admin_token}"},
    ) as session:
        app[CASESTORE] = session
        yield


def task_ctx(name: str, factory: Callable[[web.Application], Coroutine[Any, Any, None]]
             ) -> CleanupCtx:
    """A background task that lives as long as the app and is cancelled on shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(factory(app), name=name)
        yield
        await cancel_and_wait(task)

    return ctx


def _in_hand(app: web.Application) -> dict[str, int]:
    consumer = app.get(WORK_CONSUMER)
    return {} if consumer is None else {consumer.queue_name: consumer.in_hand}


# Queue depths for /metrics, read in the background (shared.metrics); after amqp_ctx.
queue_metrics_ctx: CleanupCtx = task_ctx("queue-metrics", lambda app: metrics.read_queues_forever(
    app[AMQP], broker_topology.Names(app[SETTINGS].name_prefix), lambda: _in_hand(app),
    app[SETTINGS].pipeline_metrics_seconds))


def db_probe(app: web.Application) -> Probe:
    return lambda: db_ready(app)


class Loop(Protocol):
    """A background loop that can be asked to end after the work in hand."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


def loop_ctx(name: str, make: Callable[[web.Application], Loop]) -> CleanupCtx:
    """Run a loop as long as the app; on shutdown let it finish the batch in hand (a batch cut
    short is rolled back and done again after the restart), within the publish timeout."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        loop = make(app)
        task = asyncio.create_task(loop.run(), name=name)
        yield
        loop.stop()
        await asyncio.wait({task}, timeout=app[SETTINGS].publish_timeout + 5)
        await cancel_and_wait(task)

    return ctx


async def db_ready(app: web.Application) -> bool:
    try:
        async with app[POOL].acquire(timeout=2) as conn:
            return bool(await conn.fetchval("SELECT 1") == 1)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False


async def schema_ready(app: web.Application, unknown: bool = False) -> bool:
    """The database schema is not older than the code (shared.schema); `unknown` when
    Postgres cannot be asked."""
    try:
        return await app[SCHEMA].check(app[POOL])
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return unknown


def broker_ready(app: web.Application) -> bool:
    """A robust connection is never `is_closed` while it reconnects; `connected` tells the truth."""
    connection = app[AMQP]
    return not connection.is_closed and connection.connected.is_set()


async def consumer_ready(app: web.Application, queue_name: str) -> bool:
    """The broker sees a consumer on our queue (a robust reconnect can come back without one)."""
    if not broker_ready(app):
        return False
    connection = app[AMQP]
    try:
        channel = await connection.channel()
        try:
            return await broker_topology.consumer_count(channel, queue_name) > 0
        finally:
            await channel.close()
    except Exception:
        return False


def consumer_readiness(app: web.Application, consumer: str) -> ReadinessCheck:
    """Ready while Postgres answers with a schema not older than the code, and the broker sees
    this service's consumer on its queue."""
    queue_name = broker_topology.Names(app[SETTINGS].name_prefix).queue(consumer)

    async def readiness() -> dict[str, bool]:
        return {"postgres": await db_ready(app), "schema": await schema_ready(app),
                "rabbitmq": await consumer_ready(app, queue_name)}

    return readiness


async def server_header(_: web.Request, response: web.StreamResponse) -> None:
    """For `app.on_response_prepare`: aiohttp names itself and its version in every answer, which
    tells a caller which vulnerabilities to try; the product name tells nothing."""
    response.headers["Server"] = "Casewire"


# The admin token also signs in to the console, where it can be guessed over HTTP: 32
# characters of `openssl rand -hex 24` or `make run`'s are far beyond guessing.
ADMIN_TOKEN_LENGTH = 32


def require_secrets(settings: Settings) -> None:
    if not settings.admin_token:
        raise ConfigurationError("CASEWIRE_ADMIN_TOKEN is not set; the admin API needs a secret "
                                 "token (`make run` generates one).")
    if len(settings.admin_token) < ADMIN_TOKEN_LENGTH:
        raise ConfigurationError(
            f"CASEWIRE_ADMIN_TOKEN is shorter than {ADMIN_TOKEN_LENGTH} characters, short enough "
            "to guess; use a long random one (`openssl rand -hex 24`; `make run` makes one).")
    if not settings.signing_key:
        raise ConfigurationError("CASEWIRE_SIGNING_KEY is not set; signed file and return URLs "
                                 "need a secret key (`make run` generates one).")
