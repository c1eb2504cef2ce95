"""casestore: the admin API, the public file downloads, the consumer and the outbox relay."""

from collections.abc import AsyncIterator

from aiohttp import web

from services.casestore.api import (
    accounts,
    audit_log,
    automation_sends,
    automations,
    cases,
    deliveries,
    files,
    forms,
    operational,
    timers,
    users,
    webhooks,
)
from services.casestore.api.docs import PUBLIC_PATHS, add_docs
from services.casestore.api.middlewares import refuse_nul
from services.casestore.auth import middleware as authenticate
from services.casestore.automations import SECRET_BOX
from services.casestore.console.app import mount as mount_console
from services.casestore.consumers import CONSUMER, CommandConsumer
from services.casestore.dead_letter_watch import watch_forever
from services.casestore.logins import LOGINS, LoginGuard
from services.casestore.one_off_sends import dispatcher_client_ctx
from services.casestore.outbox import OutboxRelay, PublishAtCommit, read_backlog_forever
from services.casestore.retention import Retention
from services.casestore.scheduler import DeliveryScheduler
from services.casestore.timer_scheduler import TimerScheduler
from services.casestore.webhook_tokens import TOKEN_SEAL, TokenSeal, seal_at_start
from shared.broker_topology import Names
from shared.crypto import SecretBox
from shared.service import (
    AMQP,
    POOL,
    PUBLISHER,
    SETTINGS,
    consumer_ctx,
    consumer_readiness,
    loop_ctx,
    new_app,
    task_ctx,
)
from shared.settings import Settings
from shared.web import add_ops_routes

COMMANDS = web.AppKey("commands", CommandConsumer)
AT_COMMIT = web.AppKey("at_commit", PublishAtCommit)


def at_commit(app: web.Application) -> PublishAtCommit:
    app[AT_COMMIT] = PublishAtCommit(app[POOL], app[PUBLISHER], app[SETTINGS])
    return app[AT_COMMIT]


async def commands_ctx(app: web.Application) -> AsyncIterator[None]:
    """Outlives the queue consumer (cleanup runs in reverse), so draining messages finish; the
    publisher of their events at commit outlives both."""
    app[COMMANDS] = CommandConsumer(app[POOL], app[SETTINGS], app[AT_COMMIT])
    async with app[COMMANDS].running():
        yield


def command_consumer(app: web.Application) -> CommandConsumer:
    return app[COMMANDS]


def create_app(settings: Settings) -> web.Application:
    app = new_app("casestore", settings,
                  authenticate(settings.admin_token, PUBLIC_PATHS),
                  refuse_nul, client_max_size=settings.max_body_bytes)
    app[LOGINS] = LoginGuard(settings)
    app[SECRET_BOX] = SecretBox(settings.encryption_key)
    app[TOKEN_SEAL] = TokenSeal.of(settings)
    app.cleanup_ctx.extend([loop_ctx("outbox-at-commit", at_commit),
                            commands_ctx, consumer_ctx(CONSUMER, command_consumer),
                            loop_ctx("outbox-relay", lambda app: OutboxRelay(
                                app[POOL], app[PUBLISHER], app[SETTINGS])),
                            loop_ctx("delivery-scheduler", lambda app: DeliveryScheduler(
                                app[POOL], app[SETTINGS])),
                            loop_ctx("timer-scheduler", lambda app: TimerScheduler(
                                app[POOL], app[SETTINGS])),
                            loop_ctx("retention", lambda app: Retention(app[POOL], app[SETTINGS])),
                            dispatcher_client_ctx,
                            task_ctx("seal-webhook-tokens", seal_at_start),
                            task_ctx("outbox-metrics", lambda app: read_backlog_forever(
                                app[POOL], app[SETTINGS].pipeline_metrics_seconds)),
                            task_ctx("dead-letter-watch", lambda app: watch_forever(
                                app[POOL], app[AMQP], Names(app[SETTINGS].name_prefix),
                                app[SETTINGS].pipeline_metrics_seconds))])
    for module in (forms, webhooks, users, cases, automations, automation_sends, deliveries, timers,
                   files, accounts, audit_log, operational):
        app.router.add_routes(module.routes)
    mount_console(app, settings)
    add_docs(app, settings)
    add_ops_routes(app, consumer_readiness(app, CONSUMER))
    return app
