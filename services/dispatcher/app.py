"""dispatcher: consumes case events; serves only health, readiness and metrics."""

from aiohttp import web

from services.dispatcher.consumers import CONSUMER, ROUTING_KEYS, on_case_event
from shared import broker
from shared.service import SETTINGS, amqp_ctx, consumer_ctx, consumer_ready
from shared.settings import Settings
from shared.web import add_ops_routes, correlation_middleware


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[correlation_middleware("dispatcher")])
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([amqp_ctx,
                            consumer_ctx(CONSUMER, ROUTING_KEYS, lambda _: on_case_event)])
    queue_name = broker.Names(settings.name_prefix).queue(CONSUMER)

    async def readiness() -> dict[str, bool]:
        return {"rabbitmq": await consumer_ready(app, queue_name)}

    add_ops_routes(app, readiness)
    return app
