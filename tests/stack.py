"""The three services running in-process on free ports, against the real Postgres and RabbitMQ."""

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from services.casestore.app import create_app as casestore_app
from services.casestore.migrate import drop_database, migrate
from services.dispatcher.app import create_app as dispatcher_app
from services.ingest.app import create_app as ingest_app
from shared import broker_topology, serving
from shared.crypto import new_key
from shared.settings import Settings

FACTORIES = {"casestore": casestore_app, "ingest": ingest_app, "dispatcher": dispatcher_app}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _stacks_if_stuck(what: str, within: float) -> AsyncIterator[None]:
    """A start or stop that hangs fails with every task's stack, not a bare test timeout."""
    try:
        async with asyncio.timeout(within):
            yield
    except TimeoutError:
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        raise AssertionError(f"{what} within {within} s") from None


@dataclass
class Stack:
    settings: Settings
    runners: dict[str, web.AppRunner] = field(default_factory=dict)

    def port(self, service: str) -> int:
        return int(getattr(self.settings, f"{service}_port"))

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port(service)}"

    async def start(self, service: str, within: float = 60.0) -> None:
        async with _stacks_if_stuck(f"{service} did not start", within):
            runner = await serving.start(FACTORIES[service](self.settings), "127.0.0.1",
                                         self.port(service))
        self.runners[service] = runner

    async def stop(self, service: str, within: float = 60.0) -> None:
        async with _stacks_if_stuck(f"{service} did not stop", within):
            await self.runners.pop(service).cleanup()

    async def start_all(self) -> None:
        for service in ("casestore", "ingest", "dispatcher"):
            await self.start(service)

    async def stop_all(self) -> None:
        for service in list(self.runners):
            await self.stop(service)


@contextlib.asynccontextmanager
async def running_stack(settings: Settings) -> AsyncIterator[Stack]:
    """The three services on a database and broker prefix of their own, removed afterwards."""
    await migrate(settings.database_url)
    running = Stack(settings)
    await running.start_all()
    try:
        yield running
    finally:
        await running.stop_all()
        await broker_topology.delete_topology(settings.amqp_url, settings.name_prefix)
        await drop_database(settings.database_url)


# Every stack of a run: the first key encrypts. The second is listed too, as during a key
# rotation, so a test can rotate to it (`casewire rotate-encryption-key`) under a running stack.
ENCRYPTION_KEYS = (new_key(), new_key())


def isolated_settings(run_id: str, **overrides: object) -> Settings:
    """Own database, own exchange/queue prefix and own ports for one test run."""
    ports = {name: free_port() for name in ("ingest_port", "casestore_port", "dispatcher_port")}
    values: dict[str, object] = {
        "database_url": f"postgresql://postgres@127.0.0.1:5432/casewire_test_{run_id}",
        "name_prefix": f"casewire-test-{run_id}",
        "admin_token": f"test-token-{run_id}-{'x' * 24}",
        "signing_key": f"test-signing-key-{run_id}",
        "encryption_key": ",".join(ENCRYPTION_KEYS),
        "dispatcher_url": f"http://127.0.0.1:{ports['dispatcher_port']}",
        # Receivers in tests are aiohttp servers on loopback; production refuses loopback.
        "outgoing_allow_networks": ["127.0.0.0/8"],
        "retry_backoff_seconds": 0.05,
        "shutdown_grace_seconds": 2.0,
        "retry_backoff_max_seconds": 0.2,
        "public_base_url": f"http://127.0.0.1:{ports['ingest_port']}",
        "casestore_url": f"http://127.0.0.1:{ports['casestore_port']}",
        "outbox_poll_seconds": 0.5,
        "delivery_poll_seconds": 0.2,
        "timer_poll_seconds": 0.2,
        # Twenty concurrent argon2 hashes on a busy shared machine take longer than the
        # production wait; the wait itself is tested on the guard alone.
        "password_hash_wait_seconds": 30.0,
        "metrics_refresh_seconds": 0.2,
        "pipeline_metrics_seconds": 0.2,
        # Tests post to webhooks made a moment ago many times a second, which production
        # integrations do not; the production budget is tested in test_unknown_tokens.
        "token_lookups_per_second": 1000.0,
        "log_json": False,
        **ports,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]
