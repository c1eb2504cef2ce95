"""`casewire run`: migrate, start the three services, set up the demo, print where
everything is, and stop them all on Ctrl-C."""

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile

import aio_pika
import aiohttp
import orjson

from services.casestore.migrate import migrate
from services.cli.demo import DEMO_AUTOMATION, DEMO_RECEIVER, ensure_demo
from services.cli.state import dev_secret, write_env
from shared import metrics
from shared.crypto import new_key
from shared.errors import DependencyUnavailable
from shared.secrets import redacted_url
from shared.settings import Settings

SERVICES = ("casestore", "ingest", "dispatcher")
DEV_NETWORKS = ["127.0.0.0/8", "::1/128"]


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


def _workers(settings: Settings) -> str:
    return f" ({settings.ingest_workers} processes)" if settings.ingest_workers > 1 else ""


def banner(settings: Settings, token: str, url: str) -> str:
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
    token = dev_secret(settings.admin_token, "admin-token")
    signing_key = dev_secret(settings.signing_key, "signing-key")
    encryption_key = dev_secret(settings.encryption_key, "encryption-key", new_key)
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
        hook = await ensure_demo(settings, token)
        print(banner(settings, token, hook["url"]), flush=True)
        exits = [asyncio.create_task(c.wait()) for c in children]
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([*exits, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        return 0 if stop.is_set() else 1
    finally:
        await _stop(children)
