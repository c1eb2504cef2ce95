"""dispatcher: fires automations on case events and sends outgoing webhooks."""

from collections.abc import AsyncIterator

from aiohttp import web

from services.dispatcher import api, repo
from services.dispatcher.api import DISPATCH
from services.dispatcher.consumers import CONSUMER, handler_for
from services.dispatcher.deliveries import Dispatch
from services.dispatcher.rules_cache import RulesCache
from services.dispatcher.sender import Sender
from shared import broker
from shared.crypto import SecretBox
from shared.outages import Probe
from shared.service import (
    CASESTORE,
    POOL,
    PUBLISHER,
    SETTINGS,
    amqp_ctx,
    casestore_client_ctx,
    casestore_up,
    consumer_ctx,
    consumer_ready,
    db_ready,
    pool_ctx,
    publisher_ctx,
    require_secrets,
    server_header,
)
from shared.settings import Settings
from shared.web import add_ops_routes, admin_token_middleware, correlation_middleware


async def dispatch_ctx(app: web.Application) -> AsyncIterator[None]:
    sender = Sender(app[SETTINGS])
    app[DISPATCH] = Dispatch(settings=app[SETTINGS], pool=app[POOL], publisher=app[PUBLISHER],
                             sender=sender, casestore=app[CASESTORE],
                             rules=RulesCache(app[POOL]))
    yield
    await sender.close()


def dependencies_probe(app: web.Application) -> Probe:
    async def probe() -> bool:
        return await db_ready(app) and await casestore_up(app)

    return probe


def create_app(settings: Settings) -> web.Application:
    require_secrets(settings)
    repo.use_secret_box(SecretBox(settings.encryption_key))
    app = web.Application(middlewares=[correlation_middleware("dispatcher"),
                                       admin_token_middleware("/internal/", settings.admin_token)])
    app.on_response_prepare.append(server_header)
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([pool_ctx, amqp_ctx, publisher_ctx, casestore_client_ctx, dispatch_ctx,
                            consumer_ctx(CONSUMER, lambda app: handler_for(app[DISPATCH]),
                                         dependencies_probe)])
    app.router.add_routes(api.routes)
    queue_name = broker.Names(settings.name_prefix).queue(CONSUMER)

    async def readiness() -> dict[str, bool]:
        return {"postgres": await db_ready(app),
                "rabbitmq": await consumer_ready(app, queue_name)}

    add_ops_routes(app, readiness)
    return app
