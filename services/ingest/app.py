"""ingest: the public incoming-webhook endpoint, as one aiohttp app."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web

from services.ingest import handlers, returns
from services.ingest.forms_cache import FormCache
from services.ingest.idempotency import Idempotency
from services.ingest.keys import CACHE, IDEMPOTENCY, LIMITER
from services.ingest.middlewares import errors_without_tokens
from services.ingest.ratelimit import RateLimiter
from services.ingest.signatures import SECRET_BOX
from shared.broker_topology import Names, declare_exchanges
from shared.consumer import Consumer
from shared.crypto import SecretBox
from shared.events import FORM_CHANGED
from shared.secrets import token_index_key
from shared.service import (
    AMQP,
    POOL,
    PUBLISHER,
    SETTINGS,
    casestore_client_ctx,
    new_app,
    schema_ready,
    task_ctx,
)
from shared.settings import Settings
from shared.tasks import wait_event
from shared.web import add_ops_routes

log = structlog.get_logger(__name__)


async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load every form, then follow form.changed on a private queue (one per ingest process)."""
    settings = app[SETTINGS]
    cache = app[CACHE] = FormCache(app[POOL], settings.token_lookups_per_second,
                                   token_index_key(settings.signing_key))
    await cache.reload()
    channel = await app[AMQP].channel()
    exchange = await declare_exchanges(channel, Names(app[SETTINGS].name_prefix))
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=FORM_CHANGED)
    following = Consumer(queue, cache.on_event)
    await following.start()

    def on_reconnect(*_: Any) -> None:
        # Changes made while we were disconnected never reached our private queue.
        app[RELOAD].set()

    app[AMQP].reconnect_callbacks.add(on_reconnect)
    yield
    app[AMQP].reconnect_callbacks.discard(on_reconnect)
    await following.stop(grace_seconds=0)  # a form reload is cheap to lose
    await cache.close()


RELOAD = web.AppKey("reload", asyncio.Event)


async def periodic_reload(app: web.Application) -> None:
    """A safety net for missed form.changed events: reload on reconnect and every so often."""
    while True:
        await wait_event(app[RELOAD], app[SETTINGS].form_reload_seconds)
        app[RELOAD].clear()
        try:
            await app[CACHE].reload()
        except Exception:
            log.exception("forms_reload_failed")


def create_app(settings: Settings) -> web.Application:
    app = new_app("ingest", settings, errors_without_tokens,
                  client_max_size=settings.max_body_bytes)
    # Signed webhooks' secrets are stored encrypted: a bad key stops ingest here, not later.
    app[SECRET_BOX] = SecretBox(settings.encryption_key)
    app[LIMITER] = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    app[IDEMPOTENCY] = Idempotency(settings.idempotency_ttl_seconds)
    app[RELOAD] = asyncio.Event()
    app.cleanup_ctx.extend([casestore_client_ctx, cache_ctx,
                            task_ctx("forms-reload", periodic_reload)])
    app.router.add_routes(handlers.routes)
    app.router.add_routes(returns.routes)

    async def readiness() -> dict[str, bool]:
        # Not Postgres: ingest accepts cases from its form cache while the database is down,
        # and an orchestrator must not take every ingest away during a database outage.
        # The schema is checked when Postgres answers; an outage says nothing against it.
        return {"rabbitmq": await app[PUBLISHER].ready(), "forms": app[CACHE].loaded,
                "schema": await schema_ready(app, unknown=True)}

    add_ops_routes(app, readiness)
    return app
