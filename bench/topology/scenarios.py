"""The scenarios of `make topology`: bounded load, one fault in the middle of it, then counting.

Each scenario has its own form (an automation sends every case to the receiver), so its counts
are its own. The fault strikes FAULT_AT seconds into the load and is undone the way production
undoes it (a killed node or replica is started again, a partition heals); the load goes on
throughout, then the run waits until every accepted case is stored and delivered (or
DRAIN_SECONDS pass) and counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp

from bench.topology.postgres import PostgresPair
from bench.topology.rabbit import Node, RabbitCluster
from bench.topology.replicas import PREFIX, Replicas
from bench.topology.tap import EventTap
from bench.topology.traffic import (
    Load,
    Receiver,
    delivery_counts,
    recovery,
    resent_examples,
    stored_keys,
)

RATE = 15.0
SECONDS = 30.0
FAULT_AT = 8.0
DRAIN_SECONDS = 180.0
TIMER_DELAY = timedelta(seconds=15)


@dataclass
class Topology:
    rabbit: RabbitCluster
    postgres: PostgresPair
    replicas: Replicas
    receiver: Receiver
    tap: EventTap
    database: str

    @property
    def primary_dsn(self) -> str:
        return self.postgres.primary_dsn(self.database)

    async def form(self, name: str, timers: bool = False) -> str:
        """A form with its webhook and an automation sending each case to the receiver (and,
        with `timers`, one more when its `seen-at` time comes); the webhook's path."""
        headers = {"Authorization": f"Bearer {self.replicas.admin_token}"}
        base = self.replicas.of("casestore")[0].url
        async with aiohttp.ClientSession(base_url=base, headers=headers) as api:
            await call(api, "POST", "/api/forms", form(name))
            hook = await call(api, "PUT", f"/api/forms/{name}/incoming-webhook",
                              {"enabled": True, "authenticate_user": False})
            await call(api, "POST", f"/api/forms/{name}/automations",
                       automation(self.receiver.url(name), [{"event": "case_created"}]))
            if timers:
                when = [{"event": "date_reached", "field": "seen-at"}]
                await call(api, "POST", f"/api/forms/{name}/automations",
                           automation(self.receiver.url(f"{name}-timer"), when))
        return "/" + str(hook["url"]).split("/", 3)[3]


Fault = Callable[[Topology], Awaitable[str]]


async def nothing(_: Topology) -> str:
    return "none: two replicas of each service, three nodes, a synchronous standby"


async def casestore_queue_leader(t: Topology) -> tuple[Node, str]:
    """The node leading casestore's queue (the one every accepted case goes through)."""
    queue = f"{PREFIX}.casestore"
    leader, members = await asyncio.to_thread(t.rabbit.leader_of, queue, t.rabbit.nodes[0])
    return leader, f"{leader.name}, leader of {queue} (members: {', '.join(sorted(members))})"


async def rabbitmq_node_kill(t: Topology) -> str:
    leader, described = await casestore_queue_leader(t)
    t.rabbit.kill(leader)
    await asyncio.sleep(15)  # then its pod is started again
    await asyncio.to_thread(t.rabbit.restart, leader)
    return f"kill -9 of {described}; started again after 15 s"


async def rabbitmq_node_restart(t: Topology) -> str:
    leader, described = await casestore_queue_leader(t)
    await asyncio.to_thread(t.rabbit.restart, leader)
    return f"rabbitmqctl stop, then start, of {described}"


async def network_partition(t: Topology) -> str:
    leader, described = await casestore_queue_leader(t)
    t.rabbit.partition(leader)
    await asyncio.sleep(20)
    t.rabbit.heal()
    await asyncio.to_thread(t.rabbit.wait_members, 3)
    return (f"{described} cut off from the other two nodes for 20 s (pause_minority), "
            "then healed")


async def service_replica_kill(t: Topology) -> str:
    killed = [t.replicas.of(service)[0] for service in ("ingest", "casestore", "dispatcher")]
    for replica in killed:
        t.replicas.kill(replica)
    await asyncio.sleep(10)  # then their pods are started again
    for replica in killed:
        t.replicas.start(replica)
    await asyncio.gather(*(t.replicas.wait_ready(replica) for replica in killed))
    return f"kill -9 of {', '.join(r.name for r in killed)}; started again after 10 s"


async def postgres_failover(t: Topology) -> str:
    await asyncio.to_thread(t.postgres.failover)
    return "kill -9 of the primary, the synchronous standby promoted (pg_ctl promote)"


SCENARIOS: dict[str, Fault] = {
    "replicas-steady": nothing,
    "rabbitmq-node-kill": rabbitmq_node_kill,
    "rabbitmq-node-restart": rabbitmq_node_restart,
    "network-partition": network_partition,
    "service-replica-kill": service_replica_kill,
    "postgres-failover": postgres_failover,  # last: afterwards there is no standby
}


async def run(t: Topology, name: str, hook_path: str, fault: Fault) -> dict[str, Any]:
    timers = fault is nothing
    load = Load(hook_path, [r.url for r in t.replicas.of("ingest")], name,
                TIMER_DELAY if timers else None)
    dead_before = await t.tap.dead_letters()
    sending = asyncio.create_task(load.run(RATE, SECONDS))
    await asyncio.sleep(FAULT_AT)
    fault_at = time.monotonic()
    described = await fault(t)
    await sending
    await drain(t, name, load, timers)
    counted = await count(t, name, load, fault_at, timers)
    counted["dead_lettered"] -= dead_before
    return {"name": name, "fault": described, **counted}


async def drain(t: Topology, name: str, load: Load, timers: bool) -> None:
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        stored = set(await stored_keys(t.primary_dsn, name))
        delivered = {a.key for a in t.receiver.arrivals[name]}
        timed = {a.key for a in t.receiver.arrivals[f"{name}-timer"]} if timers else stored
        if load.accepted() <= stored and stored <= delivered and stored <= timed:
            return
        await asyncio.sleep(1)


async def count(t: Topology, name: str, load: Load, fault_at: float,
                timers: bool) -> dict[str, Any]:
    stored = await stored_keys(t.primary_dsn, name)
    accepted = load.accepted()
    arrivals = t.receiver.arrivals[name]
    result: dict[str, Any] = {
        "accepted": len(accepted), "stored": len(stored),
        "lost": len(accepted - set(stored)),
        "duplicate_cases": sum(n - 1 for n in stored.values()),
        "deliveries_lost": len(set(stored) - {a.key for a in arrivals}),
        **delivery_counts(arrivals),
        **recovery(load, arrivals, fault_at),
        "given_up": len(load.sent) - len(accepted),
        "stored_not_accepted": len(set(stored) - accepted),
        "events_published_twice": t.tap.published_twice(name),
        "dead_lettered": await t.tap.dead_letters(),
        "resent_examples": await resent_examples(t.primary_dsn, arrivals),
    }
    if timers:
        fired = t.receiver.arrivals[f"{name}-timer"]
        timed = delivery_counts(fired)
        result |= {"timers_fired": timed["cases_delivered"],
                   "timers_missed": len(set(stored) - {a.key for a in fired}),
                   "timers_fired_twice": timed["duplicate_deliveries"],
                   "timer_resends": timed["resends"],
                   "receiver_most_in_flight": t.receiver.most_in_flight[name]}
    return result


def form(form_id: str) -> dict[str, Any]:
    return {"id": form_id, "name": form_id, "sections": [{"name": "Request"}],
            "fields": [{"id": "text-field", "label": "Key", "type": "text", "mandatory": True},
                       {"id": "seen-at", "label": "Seen at", "type": "datetime"}],
            "statuses": ["registered", "closed"]}


def automation(url: str, when: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": f"to {url.rsplit('/', 1)[1]}", "when": when,
            "action": {"type": "outgoing_webhook",
                       "content": [{"key": "key", "field": "text-field"}],
                       "settings": {"method": "POST", "url": url, "attempts": 3,
                                    "timeout": 10}}}


async def call(api: aiohttp.ClientSession, method: str, path: str,
               body: dict[str, Any]) -> dict[str, Any]:
    async with api.request(method, path, json=body) as resp:
        if resp.status not in (200, 201):
            raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
        answer: dict[str, Any] = await resp.json()
        return answer
