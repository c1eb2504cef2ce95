"""Casewire as it runs in production: three service processes, isolated from any other run.

Like `casewire run` (services/cli/run.py) the services are `python -m services.<name>` children
configured through `CASEWIRE_*` variables; like the tests (tests/stack.py) the run has its own
database `casewire_bench_<id>`, its own exchange/queue prefix `casewire-bench-<id>` and free
ports, and removes all of them at the end.
"""

import asyncio
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiohttp

from bench import workload
from bench.procs import Child, Children, free_port, wait_http
from services.casestore.migrate import drop_database, migrate
from shared import broker_topology
from shared.crypto import new_key

SERVICES = ("casestore", "ingest", "dispatcher")


def database_url(base: str, name: str) -> str:
    """`base` with its database replaced by `name`."""
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


@dataclass
class Forms:
    """The forms a run uses: one without automations, one with an outgoing webhook."""

    plain: str
    plain_url: str
    delivery: str
    delivery_url: str


@dataclass
class CasewireStack:
    run_id: str
    amqp_url: str
    database_url: str
    children: Children
    ports: dict[str, int] = field(default_factory=dict)
    services: dict[str, Child] = field(default_factory=dict)
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    migrated: bool = False
    ingest_workers: int = 1  # ingest processes sharing its port, as CASEWIRE_INGEST_WORKERS
    # Another version's checkout to run the services (and its migrations) from; None: this one.
    code_dir: Path | None = None

    @property
    def prefix(self) -> str:
        return f"casewire-bench-{self.run_id}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def env(self) -> dict[str, str]:
        self.ports = self.ports or {name: free_port() for name in SERVICES}
        return {
            **os.environ,
            "CASEWIRE_DATABASE_URL": self.database_url,
            "CASEWIRE_AMQP_URL": self.amqp_url,
            "CASEWIRE_NAME_PREFIX": self.prefix,
            "CASEWIRE_ADMIN_TOKEN": self.admin_token,
            "CASEWIRE_SIGNING_KEY": secrets.token_urlsafe(24),
            "CASEWIRE_ENCRYPTION_KEY": new_key(),
            "CASEWIRE_INGEST_PORT": str(self.ports["ingest"]),
            "CASEWIRE_INGEST_WORKERS": str(self.ingest_workers),
            "CASEWIRE_CASESTORE_PORT": str(self.ports["casestore"]),
            "CASEWIRE_DISPATCHER_PORT": str(self.ports["dispatcher"]),
            "CASEWIRE_PUBLIC_BASE_URL": self.url("ingest"),
            "CASEWIRE_CASESTORE_URL": self.url("casestore"),
            "CASEWIRE_DISPATCHER_URL": self.url("dispatcher"),
            "CASEWIRE_LOG_LEVEL": "WARNING",
            # The per-webhook token bucket (200/s by default) would be the only thing measured.
            "CASEWIRE_RATE_LIMIT_PER_SECOND": "100000000",
            "CASEWIRE_RATE_LIMIT_BURST": "100000000",
            # The receiver is on loopback, which production refuses.
            "CASEWIRE_OUTGOING_ALLOW_NETWORKS": '["127.0.0.0/8"]',
            "CASEWIRE_SHUTDOWN_GRACE_SECONDS": "5",
            "PYTHONUNBUFFERED": "1",
        }

    async def start(self) -> None:
        env = self.env()
        if self.code_dir is None:
            await migrate(self.database_url)
        else:
            await _migrate_with(self.code_dir, env)
        self.migrated = True
        for service in SERVICES:
            for n in range(self.ingest_workers if service == "ingest" else 1):
                name = f"{service}-{n + 1}" if n else service
                self.services[name] = self.children.start(name, ["-m", f"services.{service}"],
                                                          env=env, cwd=self.code_dir)
        for name, child in self.services.items():
            await wait_http(child, f"{self.url(_service(name))}/readyz", within=60)

    def pids(self) -> dict[str, int]:
        """Every process by name: `ingest`, `ingest-2`, ... when ingest has several."""
        return {name: child.pid for name, child in self.services.items()}

    def pids_by_service(self) -> dict[str, list[int]]:
        grouped: dict[str, list[int]] = {}
        for name, pid in self.pids().items():
            grouped.setdefault(_service(name), []).append(pid)
        return grouped

    def dead(self) -> list[str]:
        return [name for name, child in self.services.items() if not child.alive()]

    async def create_forms(self, receiver_url: str) -> Forms:
        plain = await self.create_form("bench-plain")
        delivery = await self.create_form("bench-delivery", workload.automation(receiver_url))
        return Forms("bench-plain", plain, "bench-delivery", delivery)

    async def create_form(self, form_id: str, automation: dict[str, Any] | None = None) -> str:
        """A form with its incoming webhook and, if given, an automation; the webhook's path."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        api = f"{self.url('casestore')}/api"
        async with aiohttp.ClientSession(headers=headers) as http:
            await _call(http, "POST", f"{api}/forms", workload.form(form_id), 201)
            hook = await _call(http, "PUT", f"{api}/forms/{form_id}/incoming-webhook",
                               {"enabled": True, "authenticate_user": False}, 200)
            if automation is not None:
                await _call(http, "POST", f"{api}/forms/{form_id}/automations", automation, 201)
        return _path(str(hook["url"]))

    async def stop(self) -> None:
        """Stop the services, then remove the run's queues, exchanges and database."""
        for child in self.services.values():
            self.children.stop(child)
        self.services.clear()
        try:
            await broker_topology.delete_topology(self.amqp_url, self.prefix)
        finally:
            if self.migrated:
                await drop_database(self.database_url)


async def _migrate_with(code_dir: Path, env: dict[str, str]) -> None:
    """That version's own migrations, through its own `casewire migrate`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from services.cli import main; main(['migrate'])", cwd=code_dir,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"migrating with {code_dir} failed: {output.decode()[-2000:]}")


def _service(process_name: str) -> str:
    return process_name.split("-")[0]


async def _call(http: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any],
                expect: int) -> dict[str, Any]:
    async with http.request(method, url, json=body) as resp:
        if resp.status != expect:
            raise RuntimeError(f"{method} {url} answered {resp.status}: {await resp.text()}")
        answer: dict[str, Any] = await resp.json()
        return answer


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def queue_depths(amqp_url: str, prefix: str) -> dict[str, int]:
    """Messages waiting in each of the run's queues (dead letters included)."""
    names = broker_topology.Names(prefix)
    depths: dict[str, int] = {}
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for queue in (*map(names.queue, broker_topology.WORK_QUEUES), names.dead_letters):
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                depths[queue] = int(declared.declaration_result.message_count or 0)
            except aio_pika.exceptions.ChannelClosed:
                depths[queue] = 0
    return depths

