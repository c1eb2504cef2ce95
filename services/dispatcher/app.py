"""dispatcher: fires automations on case events and sends outgoing webhooks."""

from collections.abc import AsyncIterator

from aiohttp import web

from services.dispatcher import api, metrics
from services.dispatcher.api import DEPENDENCIES
from services.dispatcher.bundling import Bundler
from services.dispatcher.consumers import CONSUMER, handler_for
from services.dispatcher.deliveries import Dependencies
from services.dispatcher.in_flight import InFlight
from services.dispatcher.repo import Reader
from services.dispatcher.rules_cache import RulesCache
from services.dispatcher.sender import Sender
from shared.crypto import SecretBox
from shared.event_payloads import (
    DeliveryAttempted,
    DeliveryReports,
    DeliveryRequested,
    DeliveryRequests,
)
from shared.events import DELIVERY_ATTEMPTED, DELIVERY_REQUESTED
from shared.service import POOL, PUBLISHER, SETTINGS, consumer_ctx, consumer_readiness, new_app
from shared.settings import Settings
from shared.web import add_ops_routes, admin_token_middleware

SECRET_BOX = web.AppKey("secret_box", SecretBox)


async def dependencies_ctx(app: web.Application) -> AsyncIterator[None]:
    """Outlives the consumer (cleanup runs in reverse): attempts in flight finish first."""
    settings = app[SETTINGS]
    sender = Sender(settings)
    reader = Reader(app[POOL], app[SECRET_BOX])
    requests: Bundler[DeliveryRequested] = Bundler(app[PUBLISHER], DELIVERY_REQUESTED,
                       lambda items: DeliveryRequests(requests=items))
    reports: Bundler[DeliveryAttempted] = Bundler(app[PUBLISHER], DELIVERY_ATTEMPTED,
                      lambda items: DeliveryReports(reports=items))
    app[DEPENDENCIES] = Dependencies(
        settings=settings, reader=reader, requests=requests, reports=reports, sender=sender,
        rules=RulesCache(reader), in_flight=InFlight(
            settings.endpoint_initial_concurrency, settings.endpoint_concurrency,
            settings.first_attempt_wait_seconds))
    metrics.ENDPOINT_LIMITS.sources.add(app[DEPENDENCIES].in_flight)
    async with requests.running(), reports.running():
        yield
        # Attempts finishing now still report their outcome.
        await app[DEPENDENCIES].in_flight.drain(settings.shutdown_grace_seconds)
    await sender.close()


def create_app(settings: Settings) -> web.Application:
    app = new_app("dispatcher", settings,
                  admin_token_middleware("/internal/", settings.admin_token))
    app[SECRET_BOX] = SecretBox(settings.encryption_key)  # a bad key stops it here, not later
    app.cleanup_ctx.extend([metrics.refresh_ctx, dependencies_ctx,
                            consumer_ctx(CONSUMER, lambda app: handler_for(app[DEPENDENCIES]))])
    app.router.add_routes(api.routes)
    add_ops_routes(app, consumer_readiness(app, CONSUMER))
    return app
