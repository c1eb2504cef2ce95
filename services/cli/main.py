"""The `casewire` command line: its commands and how they end."""

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import aio_pika
import structlog

from services.casestore.migrate import migrate
from services.cli import automations, dead_letters, deliveries, queues
from services.cli.keys import rotate_encryption_key
from services.cli.run import run
from services.cli.state import settings_for
from shared.errors import ConfigurationError, DependencyUnavailable
from shared.logging import configure_logging
from shared.schema import expected_version
from shared.settings import Settings

log = structlog.get_logger(__name__)
DESCRIPTION = "Migrate the database, run the whole system, inspect and operate it."


async def _migrate(settings: Settings) -> int:
    """Logs like the services (JSON lines on stdout), so a migration Job's log is searchable."""
    applied = await migrate(settings.database_url)
    log.info("database_up_to_date", applied=len(applied), schema_version=expected_version())
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="casewire", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the database if needed and apply migrations")
    sub.add_parser("run", help="run ingest, casestore and dispatcher with a demo form (dev)")
    queues_parser = sub.add_parser("queues",
                                   help="show queue depths (dead letters too) and consumers")
    queues_parser.add_argument("--recreate-dead-letters", action="store_true",
                        help="declare the dead-letter queue again with CASEWIRE_DEAD_LETTER_MAX, "
                        "keeping its messages")
    sub.add_parser("status", help="every service's readiness, the queues and the outbox")
    sub.add_parser("rotate-encryption-key",
                   help="re-encrypt stored secrets with the first key of CASEWIRE_ENCRYPTION_KEY")
    replay_parser = deliveries.add_parsers(sub)
    dead_parser = dead_letters.add_parsers(sub)
    automations.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command == "replay" and (problem := deliveries.replay_usage_problem(args)):
        replay_parser.error(problem)
    if args.command == "dead-letters" and (problem := dead_letters.usage_problem(args)):
        dead_parser.error(problem)
    settings = settings_for(args.command)
    if args.command == "migrate":  # a Job's log: JSON lines like the services'
        configure_logging("migrate", settings.log_level, settings.log_json)
    commands: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {
        "migrate": lambda: _migrate(settings), "run": lambda: run(settings),
        "queues": lambda: queues.queues(settings, args.recreate_dead_letters),
        "status": lambda: queues.status(settings),
        "rotate-encryption-key": lambda: rotate_encryption_key(settings),
        "deliveries": lambda: deliveries.deliveries(settings, args),
        "replay": lambda: deliveries.replay(settings, args),
        "dead-letters": lambda: dead_letters.dead_letters_command(settings, args),
        "automations": lambda: automations.automations(settings, args)}
    try:
        sys.exit(asyncio.run(commands[args.command]()))
    except (DependencyUnavailable, ConfigurationError) as exc:
        if args.command == "migrate":
            log.error("migrate_failed", error=str(exc))
        print(f"casewire {args.command}: {exc}", file=sys.stderr)
        sys.exit(2)
    except aio_pika.exceptions.AMQPError as exc:
        print(f"casewire {args.command}: RabbitMQ refused: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
