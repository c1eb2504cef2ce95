"""The `casewire` command: migrate the database, run the whole system, inspect and operate it.

`casewire run` writes the settings it ran with to .casewire/env; every other command reads them
there (the environment still wins), so a command looks at the stack `make run` started.
"""

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
import structlog

from services import cli_automations, cli_dead_letters, cli_deliveries, cli_queues
from services.casestore.automations import reencrypt_secrets
from services.casestore.migrate import migrate
from services.casestore.repo import access as access_rows
from services.casestore.webhook_tokens import reencrypt_tokens
from shared import metrics
from shared.crypto import SecretBox, new_key
from shared.db import create_pool
from shared.errors import ConfigurationError, DependencyUnavailable
from shared.logging import configure_logging
from shared.schema import expected_version
from shared.secrets import redacted_url
from shared.settings import Settings

log = structlog.get_logger(__name__)
SERVICES = ("casestore", "ingest", "dispatcher")
STATE_DIR = Path(".casewire")
ENV_FILE = STATE_DIR / "env"
DEV_NETWORKS = ["127.0.0.0/8", "::1/128"]
DEMO_FORM = {
    "id": "demo",
    "name": "Demo",
    "sections": [{"name": "Request"}, {"name": "Handling"}],
    "fields": [
        {"id": "text-field", "label": "Text", "type": "text", "mandatory": True, "section": 0},
        {"id": "email", "label": "E-mail", "type": "email", "section": 0},
        {"id": "due-date", "label": "Due date", "type": "date", "section": 0},
        {"id": "priority", "label": "Priority", "type": "select", "section": 0,
         "options": ["low", "normal", "high"]},
        {"id": "notes", "label": "Internal notes", "type": "textarea", "section": 1},
    ],
    "statuses": ["registered", "in_progress", "closed"],
}


def _dev_secret(configured: str, name: str,
                make: Callable[[], str] = lambda: secrets.token_urlsafe(24)) -> str:
    """The configured secret, or one generated once and kept in .casewire/ for dev runs."""
    if configured:
        return configured
    path = STATE_DIR / name
    if not path.exists():
        STATE_DIR.mkdir(exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _env_value(value: Any) -> str:
    """As the settings read it back: lists as JSON, in double quotes (dotenv syntax)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text, ensure_ascii=False)


def write_env(settings: Settings) -> None:
    """The settings of this run, for every other `casewire` command (secrets too: mode 0600)."""
    STATE_DIR.mkdir(exist_ok=True)
    lines = [f"CASEWIRE_{name.upper()}={_env_value(value)}"
             for name, value in settings.model_dump(mode="json").items()]
    ENV_FILE.touch(mode=0o600)
    ENV_FILE.chmod(0o600)
    ENV_FILE.write_text("# written by `casewire run`; read by every other casewire command\n"
                        + "\n".join(lines) + "\n")


def settings_for(command: str) -> Settings:
    """`run` takes the environment alone; the others the last run's settings beneath it."""
    if command != "run" and ENV_FILE.exists():
        return Settings(_env_file=ENV_FILE)
    return Settings()


async def _check_broker(settings: Settings) -> None:
    try:
        connection = await asyncio.wait_for(aio_pika.connect(settings.amqp_url), 10)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
        raise DependencyUnavailable(
            f"Cannot reach RabbitMQ at {redacted_url(settings.amqp_url)} ({exc!r}); "
            "start it or set CASEWIRE_AMQP_URL.") from exc
    await connection.close()


async def _wait_ready(port: int, children: list[asyncio.subprocess.Process]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if any(c.returncode is not None for c in children):
                raise DependencyUnavailable("a service exited during start-up (see its log above)")
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise DependencyUnavailable(f"the service on port {port} did not become ready in 30 s")


async def _ensure_demo(settings: Settings, token: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{settings.casestore_port}/api"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{base}/forms/demo") as resp:
            exists = resp.status == 200
        if not exists:
            async with http.post(f"{base}/forms", json=DEMO_FORM) as resp:
                resp.raise_for_status()
        async with http.get(f"{base}/forms/demo/incoming-webhook") as resp:
            if resp.status == 200:
                hook: dict[str, str] = await resp.json()
                return hook
        async with http.put(f"{base}/forms/demo/incoming-webhook", json={"enabled": True}) as resp:
            resp.raise_for_status()
            created: dict[str, str] = await resp.json()
            return created


DEMO_RECEIVER = "http://127.0.0.1:9000/hook"
DEMO_AUTOMATION = {
    "name": "Demo: new cases to a receiver",
    "when": [{"event": "case_created"}],
    "action": {"type": "outgoing_webhook",
               "content": [{"key": "caseNumber", "meta": "case_number"},
                           {"key": "text", "field": "text-field"}],
               "settings": {"method": "POST", "url": DEMO_RECEIVER, "attempts": 3}},
}


def _workers(settings: Settings) -> str:
    return f" ({settings.ingest_workers} processes)" if settings.ingest_workers > 1 else ""


def _banner(settings: Settings, token: str, url: str) -> str:
    api = f"http://127.0.0.1:{settings.casestore_port}/api"
    return f"""
Casewire is running (Ctrl-C stops it).
  ingest      http://127.0.0.1:{settings.ingest_port}{_workers(settings)}
  casestore   {api}
  console     http://127.0.0.1:{settings.casestore_port}/console/  (sign in with the admin token)
  dispatcher  http://127.0.0.1:{settings.dispatcher_port}/readyz
  API docs    {api}/docs
Admin token:  {token}
Demo form "demo", incoming webhook URL:
  {url}
Create a case:
  curl -X POST -H 'Content-type: application/json' \\
    --data '{{"text-field": "Simple input in a text-field with id text-field"}}' \\
    {url}
See it (newest first):
  curl -H 'Authorization: Bearer {token}' {api}/forms/demo/cases
Send every new case to your receiver (put its URL in place of {DEMO_RECEIVER}):
  curl -X POST -H 'Authorization: Bearer {token}' -H 'Content-type: application/json' \\
    --data '{orjson.dumps(DEMO_AUTOMATION).decode()}' \\
    {api}/forms/demo/automations
Its deliveries, attempt by attempt:
  curl -H 'Authorization: Bearer {token}' {api}/deliveries
"""


async def _stop(children: list[asyncio.subprocess.Process]) -> None:
    for child in children:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            await asyncio.wait_for(child.wait(), 15)
        except TimeoutError:
            child.kill()


async def run(settings: Settings) -> int:
    """Migrate, start the three services, make the demo form, and wait for Ctrl-C."""
    token = _dev_secret(settings.admin_token, "admin-token")
    signing_key = _dev_secret(settings.signing_key, "signing-key")
    encryption_key = _dev_secret(settings.encryption_key, "encryption-key", new_key)
    await migrate(settings.database_url)
    await _check_broker(settings)
    env = {**os.environ, "CASEWIRE_ADMIN_TOKEN": token, "CASEWIRE_SIGNING_KEY": signing_key,
           "CASEWIRE_ENCRYPTION_KEY": encryption_key}
    env.pop(metrics.MULTIPROC_DIR, None)
    # A dev run may send outgoing webhooks to a receiver on this machine; production may not.
    env.setdefault("CASEWIRE_OUTGOING_ALLOW_NETWORKS", json.dumps(DEV_NETWORKS))
    write_env(settings.model_copy(update={
        "admin_token": token, "signing_key": signing_key, "encryption_key": encryption_key,
        "outgoing_allow_networks": json.loads(env["CASEWIRE_OUTGOING_ALLOW_NETWORKS"])}))
    # Several ingest processes on one port report as one: a fresh directory they all write
    # their metrics to, which a scrape of any of them adds up (shared/metrics.py).
    metrics_dir = tempfile.mkdtemp(prefix="casewire-ingest-metrics-")
    try:
        return await _run_children(settings, token, env, {metrics.MULTIPROC_DIR: metrics_dir}
                                   if settings.ingest_workers > 1 else {})
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


async def _run_children(settings: Settings, token: str, env: dict[str, str],
                        ingest_env: dict[str, str]) -> int:
    # Own sessions: a terminal's Ctrl-C reaches only us, and each child gets exactly one SIGTERM
    # (a second signal would cut its graceful shutdown short).
    processes = [name for name in SERVICES
                 for _ in range(settings.ingest_workers if name == "ingest" else 1)]
    children = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"services.{name}", start_new_session=True,
        env={**env, **ingest_env} if name == "ingest" else env) for name in processes]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for port in (settings.casestore_port, settings.ingest_port, settings.dispatcher_port):
            await _wait_ready(port, children)
        hook = await _ensure_demo(settings, token)
        print(_banner(settings, token, hook["url"]), flush=True)
        exits = [asyncio.create_task(c.wait()) for c in children]
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([*exits, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        return 0 if stop.is_set() else 1
    finally:
        await _stop(children)


async def rotate_encryption_key(settings: Settings) -> int:
    """Re-encrypt every stored secret (automations', signed webhooks') with the first key."""
    box = SecretBox(settings.encryption_key)
    pool = await create_pool(settings)
    try:
        async with pool.acquire() as conn, conn.transaction():
            changed = await reencrypt_secrets(conn, box)
            hooks = await access_rows.reencrypt_verify_secrets(conn, box.rotate)
            tokens = await reencrypt_tokens(conn, box)
    finally:
        await pool.close()
    print(f"{changed} automation(s), {tokens} webhook token(s) and {hooks} signed incoming "
          "webhook secret(s) re-encrypted with the first key of CASEWIRE_ENCRYPTION_KEY; the "
          "other keys may now be removed")
    return 0


async def _migrate(settings: Settings) -> int:
    """Logs like the services (JSON lines on stdout), so a migration Job's log is searchable."""
    applied = await migrate(settings.database_url)
    log.info("database_up_to_date", applied=len(applied), schema_version=expected_version())
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="casewire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the database if needed and apply migrations")
    sub.add_parser("run", help="run ingest, casestore and dispatcher with a demo form (dev)")
    queues = sub.add_parser("queues", help="show queue depths (dead letters too) and consumers")
    queues.add_argument("--recreate-dead-letters", action="store_true",
                        help="declare the dead-letter queue again with CASEWIRE_DEAD_LETTER_MAX, "
                        "keeping its messages")
    sub.add_parser("status", help="every service's readiness, the queues and the outbox")
    sub.add_parser("rotate-encryption-key",
                   help="re-encrypt stored secrets with the first key of CASEWIRE_ENCRYPTION_KEY")
    replay_parser = cli_deliveries.add_parsers(sub)
    dead_parser = cli_dead_letters.add_parsers(sub)
    cli_automations.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command == "replay" and (problem := cli_deliveries.replay_usage_problem(args)):
        replay_parser.error(problem)
    if args.command == "dead-letters" and (problem := cli_dead_letters.usage_problem(args)):
        dead_parser.error(problem)
    settings = settings_for(args.command)
    if args.command == "migrate":  # a Job's log: JSON lines like the services'
        configure_logging("migrate", settings.log_level, settings.log_json)
    commands: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {
        "migrate": lambda: _migrate(settings), "run": lambda: run(settings),
        "queues": lambda: cli_queues.queues(settings, args.recreate_dead_letters),
        "status": lambda: cli_queues.status(settings),
        "rotate-encryption-key": lambda: rotate_encryption_key(settings),
        "deliveries": lambda: cli_deliveries.deliveries(settings, args),
        "replay": lambda: cli_deliveries.replay(settings, args),
        "dead-letters": lambda: cli_dead_letters.dead_letters_command(settings, args),
        "automations": lambda: cli_automations.automations(settings, args)}
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
