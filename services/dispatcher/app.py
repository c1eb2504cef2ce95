"""dispatcher: fires automations on case events and sends outgoing webhooks."""

from collections.abc import AsyncIterator

from aiohttp import web

from services.dispatcher import api, metrics
from services.dispatcher.api import DISPATCH
from services.dispatcher.consumers import CONSUMER, handler_for
from services.dispatcher.deliveries import Dispatch
from services.dispatcher.in_flight import InFlight
from services.dispatcher.repo import Reader
from services.dispatcher.rules_cache import RulesCache
from services.dispatcher.sender import Sender
from shared import broker
from shared.crypto import SecretBox
from shared.service import (
    POOL,
    PUBLISHER,
    SETTINGS,
    amqp_ctx,
    consumer_ctx,
    consumer_ready,
    db_probe,
    db_ready,
    pool_ctx,
    publisher_ctx,
    queue_metrics_ctx,
    require_secrets,
    server_header,
)
from shared.settings import Settings
from shared.web import add_ops_routes, admin_token_middleware, correlation_middleware

SECRET_BOX = web.AppKey("secret_box", SecretBox)


async def dispatch_ctx(app: web.Application) -> AsyncIterator[None]:
    """Outlives the consumer (cleanup runs in reverse): attempts in flight finish first."""
    settings = app[SETTINGS]
    sender = Sender(settings)
    reader = Reader(app[POOL], app[SECRET_BOX])
    app[DISPATCH] = Dispatch(settings=settings, reader=reader, publisher=app[PUBLISHER],
                             sender=sender, rules=RulesCache(reader),
                             in_flight=InFlight(settings.endpoint_concurrency))
    yield
    await app[DISPATCH].in_flight.drain(settings.shutdown_grace_seconds)
    await sender.close()


def create_app(settings: Settings) -> web.Application:
    require_secrets(settings)
    app = web.Application(middlewares=[correlation_middleware("dispatcher"),
                                       admin_token_middleware("/internal/", settings.admin_token)])
    app.on_response_prepare.append(server_header)
    app[SETTINGS] = settings
    app[SECRET_BOX] = SecretBox(settings.encryption_key)  # a bad key stops it here, not later
    app.cleanup_ctx.extend([pool_ctx, metrics.refresh_ctx, amqp_ctx, publisher_ctx, dispatch_ctx,
                            consumer_ctx(CONSUMER, lambda app: handler_for(app[DISPATCH]),
                                         db_probe), queue_metrics_ctx])
    app.router.add_routes(api.routes)
    queue_name = broker.Names(settings.name_prefix).queue(CONSUMER)

    async def readiness() -> dict[str, bool]:
        return {"postgres": await db_ready(app),
                "rabbitmq": await consumer_ready(app, queue_name)}

    add_ops_routes(app, readiness)
    return app
