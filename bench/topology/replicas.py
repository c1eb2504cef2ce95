"""Two replicas of each Casewire service, each a process started from the image (ImageRoot).

Every replica has its own port; all share the database (both Postgres hosts, read-write
wanted) and the cluster (all three nodes, each replica starting at another node, so their
connections spread as a load balancer would spread them). A replica can be killed (-9) and
started again as a Deployment would restart its pod.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.procs import free_port
from bench.topology.image import ImageRoot
from shared.crypto import new_key

SERVICES = ("casestore", "ingest", "dispatcher")
REPLICAS = 2
PREFIX = "casewire-topology"
# Settings the run changes from the defaults, and why (also written into topology.json).
RUN_SETTINGS = {
    # Receivers and the load are on loopback, which production refuses.
    "CASEWIRE_OUTGOING_ALLOW_NETWORKS": '["127.0.0.0/8"]',
    "CASEWIRE_RATE_LIMIT_PER_SECOND": "100000",
    "CASEWIRE_RATE_LIMIT_BURST": "100000",
    # An attempt whose dispatcher was killed is handed out again this long after its timeout
    # (60 s by default), so a scenario drains in seconds rather than minutes.
    "CASEWIRE_DELIVERY_LEASE_MARGIN_SECONDS": "10",
    "CASEWIRE_LOG_LEVEL": "WARNING",
}


@dataclass
class Replica:
    service: str
    index: int
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index + 1}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Replicas:
    image: ImageRoot
    database_url: str
    broker_urls: list[str]
    logs: Path
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    running: dict[str, Replica] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ports = {(s, i): free_port() for s in SERVICES for i in range(REPLICAS)}
        first = {s: f"http://127.0.0.1:{ports[(s, 0)]}" for s in SERVICES}
        shared = {
            **RUN_SETTINGS,
            "CASEWIRE_HOST": "127.0.0.1",
            "CASEWIRE_DATABASE_URL": self.database_url,
            "CASEWIRE_NAME_PREFIX": PREFIX,
            "CASEWIRE_ADMIN_TOKEN": self.admin_token,
            "CASEWIRE_SIGNING_KEY": secrets.token_urlsafe(24),
            "CASEWIRE_ENCRYPTION_KEY": new_key(),
            "CASEWIRE_PUBLIC_BASE_URL": first["ingest"],
            "CASEWIRE_CASESTORE_URL": first["casestore"],
            "CASEWIRE_DISPATCHER_URL": first["dispatcher"],
        }
        for (service, index), port in ports.items():
            nodes = self.broker_urls[index:] + self.broker_urls[:index]
            env = {**shared, "CASEWIRE_AMQP_URL": nodes[0], "CASEWIRE_AMQP_URLS": ",".join(nodes),
                   f"CASEWIRE_{service.upper()}_PORT": str(port)}
            replica = Replica(service, index, port, env, self.logs / f"{service}-{index + 1}.log")
            self.running[replica.name] = replica

    def of(self, service: str) -> list[Replica]:
        return [r for r in self.running.values() if r.service == service]

    def migrate(self) -> str:
        result = self.image.run(["casewire", "migrate"], {
            "CASEWIRE_DATABASE_URL": self.database_url}, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"casewire migrate failed: {result.stderr[-2000:]}")
        return result.stdout + result.stderr

    def start(self, replica: Replica) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with replica.log.open("ab") as log:
            replica.process = subprocess.Popen(  # noqa: S603 - our own image
                self.image.argv(["python", "-m", f"services.{replica.service}"], replica.env),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    async def start_all(self) -> None:
        for service in SERVICES:  # casestore first: it declares nothing others wait for
            for replica in self.of(service):
                self.start(replica)
        await asyncio.gather(*(self.wait_ready(r) for r in self.running.values()))

    async def wait_ready(self, replica: Replica, within: float = 120) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            for _ in range(int(within * 5)):
                if not replica.alive():
                    raise RuntimeError(f"{replica.name} exited: {tail(replica.log)}")
                try:
                    async with http.get(f"{replica.url}/readyz") as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{replica.name} not ready: {tail(replica.log)}")

    def kill(self, replica: Replica) -> None:
        """kill -9: the process is the service itself (ImageRoot execs into it)."""
        if replica.process is not None and replica.alive():
            os.kill(replica.process.pid, signal.SIGKILL)
            replica.process.wait(30)

    def stop_all(self) -> None:
        for replica in self.running.values():
            if replica.process is not None and replica.alive():
                replica.process.terminate()
        for replica in self.running.values():
            if replica.process is None:
                continue
            try:
                replica.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill(replica)


def tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
