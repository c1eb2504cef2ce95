"""A three-node RabbitMQ cluster on loopback, beside (never touching) the machine's own node.

Each node has its own name (`cwt<run>-1@localhost` ...), AMQP and distribution ports, data and
log directories, config (listener on 127.0.0.1, `pause_minority`, a short net tick so a
partition is seen in seconds) and the run's own Erlang cookie (in the run's HOME). Nodes 2 and 3
join node 1 with `rabbitmqctl join_cluster`. Quorum queues declared by Casewire get a replica on
every member (the default initial group size is the cluster's size).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import free_port

BIN = Path("/usr/lib/rabbitmq/bin")
CONFIG = """listeners.tcp.1 = 127.0.0.1:{port}
loopback_users = none
cluster_partition_handling = pause_minority
net_ticktime = {tick}
log.console = false
log.file.level = warning
"""
# Seconds between the distribution's ticks: a node cut off is noticed within about this long
# (RabbitMQ's default, 60, would make a partition scenario last minutes).
NET_TICK = 8


@dataclass
class Node:
    name: str
    port: int
    dist_port: int
    base: Path
    # Its connections to the other nodes leave from this loopback address, so a partition can
    # drop exactly them (the nodes all listen on 127.0.0.1).
    source: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"


@dataclass
class RabbitCluster:
    work: Path
    run_id: str
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.work / "home").mkdir(parents=True, exist_ok=True)
        cookie = self.work / "home/.erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        self.nodes = [Node(f"cwt{self.run_id}-{n}@localhost", free_port(), free_port(),
                           self.work / f"rabbit-{n}", f"127.0.0.{10 + n}") for n in (1, 2, 3)]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def env(self, node: Node) -> dict[str, str]:
        node.base.mkdir(parents=True, exist_ok=True)
        (node.base / "rabbitmq.conf").write_text(CONFIG.format(port=node.port, tick=NET_TICK))
        (node.base / "advanced.config").write_text("[].\n")  # 3.10 refuses an empty one
        (node.base / "enabled_plugins").write_text("[].\n")
        (node.base / "env.conf").write_text("")  # not the machine's rabbitmq-env.conf
        return {"PATH": os.environ["PATH"], "HOME": str(self.work / "home"),
                "RABBITMQ_NODENAME": node.name, "RABBITMQ_NODE_PORT": str(node.port),
                "RABBITMQ_DIST_PORT": str(node.dist_port),
                "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(node.base / "log"),
                "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.base / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.base / "enabled_plugins"),
                "RABBITMQ_CONF_ENV_FILE": str(node.base / "env.conf"),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                    "-kernel inet_dist_use_interface {127,0,0,1} -kernel "
                    f"inet_dist_connect_options [{{ip,{{{node.source.replace('.', ',')}}}}}]"}

    def start_node(self, node: Node) -> None:
        log = (self.work / f"{node.name.split('@')[0]}.out").open("ab")
        node.process = subprocess.Popen([str(BIN / "rabbitmq-server")],  # noqa: S603
                                        env=self.env(node), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def ctl(self, node: Node, *args: str, timeout: float = 120) -> str:
        result = subprocess.run([str(BIN / "rabbitmqctl"), "-n", node.name, *args],  # noqa: S603
                                env=self.env(node), capture_output=True, text=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {node.name}: "
                               f"{result.stdout[-500:]} {result.stderr[-1500:]}")
        return result.stdout

    def wait_up(self, node: Node, within: float = 120) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                self.ctl(node, "await_startup", "--timeout", "10", timeout=20)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(f"{node.name} exited at start-up") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def start(self) -> None:
        for node in self.nodes:
            self.start_node(node)
        for node in self.nodes:
            self.wait_up(node)
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", self.nodes[0].name)
            self.ctl(node, "start_app")
        self.wait_members(3)

    def running_members(self, via: Node) -> list[str]:
        status = self.ctl(via, "cluster_status", "--formatter", "json", timeout=30)
        listed: list[str] = json.loads(status)["running_nodes"]
        return listed

    def wait_members(self, count: int, within: float = 120) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for node in self.nodes:
                try:
                    if len(self.running_members(node)) >= count:
                        return
                except (RuntimeError, subprocess.TimeoutExpired):
                    continue
            time.sleep(1)
        raise RuntimeError(f"the cluster never had {count} running members")

    def leader_of(self, queue: str, via: Node) -> tuple[Node, list[str]]:
        """The node leading a quorum queue, and the queue's members."""
        listed = self.ctl(via, "list_queues", "name", "leader", "members", "--formatter", "json")
        found = next(q for q in json.loads(listed) if q["name"] == queue)
        return next(n for n in self.nodes if n.name == found["leader"]), found["members"]

    def kill(self, node: Node) -> None:
        """kill -9 of the node's Erlang VM (its children go with it)."""
        if node.process is not None and node.process.poll() is None:
            os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(30)

    def stop_node(self, node: Node) -> None:
        if node.process is not None and node.process.poll() is None:
            try:
                self.ctl(node, "stop", timeout=60)
                node.process.wait(60)
            except (RuntimeError, subprocess.TimeoutExpired):
                self.kill(node)

    def restart(self, node: Node) -> None:
        self.stop_node(node)
        self.start_node(node)
        self.wait_up(node)

    def partition(self, node: Node) -> None:
        """Cut `node` off from the other two (not from clients): every packet of the Erlang
        distribution to or from it is dropped, in a chain of the run's own."""
        iptables("-N", CHAIN)
        iptables("-I", "OUTPUT", "-j", CHAIN)
        for rule in (("-s", node.source), ("-d", node.source), ("--dport", str(node.dist_port)),
                     ("--sport", str(node.dist_port))):
            iptables("-A", CHAIN, "-p", "tcp", *rule, "-j", "DROP")

    def heal(self) -> None:
        iptables("-D", "OUTPUT", "-j", CHAIN, check=False)
        iptables("-F", CHAIN, check=False)
        iptables("-X", CHAIN, check=False)

    def stop(self) -> None:
        self.heal()
        for node in self.nodes:
            self.kill(node)


CHAIN = "CASEWIRE-TOPOLOGY"


def iptables(*args: str, check: bool = True) -> None:
    subprocess.run(["iptables", "-w", *args], capture_output=True, check=check,  # noqa: S603,S607
                   timeout=30)
