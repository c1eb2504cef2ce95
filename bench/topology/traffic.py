"""What a scenario sends and what it finds: bounded load on the ingest replicas, the receiver
the automations call, and the counts read back from Postgres and the receiver.

Each request carries its own key in the case (`text-field`) and as its `Idempotency-Key`; an
answer other than 200 (503 while a node or a replica is away, a refused connection) is retried
with the same key on the other ingest replica, as a well-behaved sender does. A key is
*accepted* once ingest answered 200 for it. Nothing is assumed: stored cases are counted in
Postgres, deliveries at the receiver, by key and by `webhook-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp import web

RETRY_PAUSE = 0.25
GIVE_UP_AFTER = 120.0
# A case is held up when it reached the receiver this much later than ingest accepted it.
SLOW_DELIVERY = 2.0
RECEIVER_DELAY = 0.05  # a receiver that takes 50 ms, as a distant one does


@dataclass
class Sent:
    first_at: float
    accepted_at: float | None = None
    failures: list[float] = field(default_factory=list)


@dataclass
class Arrival:
    key: str
    webhook_id: str
    at: float


class Receiver:
    """The external system: records each request of each path, answers 200 after a pause."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[Arrival]] = defaultdict(list)
        self.in_flight: Counter[str] = Counter()
        self.most_in_flight: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.in_flight[path] += 1
        self.most_in_flight[path] = max(self.most_in_flight[path], self.in_flight[path])
        try:
            body = orjson.loads(await request.read())
            self.arrivals[path].append(Arrival(str(body["key"]), request.headers["webhook-id"],
                                               time.monotonic()))
            await asyncio.sleep(RECEIVER_DELAY)
        finally:
            self.in_flight[path] -= 1
        return web.json_response({})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Load:
    """Sends `rate` cases a second for `seconds` to the ingest replicas, round robin."""

    hook_paths: str
    ingest_urls: list[str]
    name: str
    # Each case's `seen-at` this far after it is sent (a timer automation fires then).
    timer_delay: timedelta | None = None
    sent: dict[str, Sent] = field(default_factory=dict)

    async def run(self, rate: float, seconds: float) -> None:
        targets = itertools.cycle(self.ingest_urls)
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=10)) as http:
            tasks = []
            start = time.monotonic()
            for n in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
                key = f"{self.name}-{n}"
                tasks.append(asyncio.create_task(self._send(http, key, targets)))
            await asyncio.gather(*tasks)

    async def _send(self, http: aiohttp.ClientSession, key: str,
                    targets: itertools.cycle[str]) -> None:
        record = self.sent[key] = Sent(time.monotonic())
        body: dict[str, Any] = {"text-field": key}
        if self.timer_delay is not None:
            body["seen-at"] = (datetime.now(UTC) + self.timer_delay).isoformat()
        while time.monotonic() - record.first_at < GIVE_UP_AFTER:
            url = f"{next(targets)}{self.hook_paths}"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.post(url, json=body, headers={"Idempotency-Key": key}) as resp:
                    if resp.status == 200:
                        record.accepted_at = time.monotonic()
                        return
            record.failures.append(time.monotonic())
            await asyncio.sleep(RETRY_PAUSE)

    def accepted(self) -> set[str]:
        return {key for key, sent in self.sent.items() if sent.accepted_at is not None}


async def stored_keys(dsn: str, form_id: str) -> Counter[str]:
    """How many cases each key made, read from the current primary."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT data->>'text-field' AS key, count(*) AS n FROM cases "
                                "WHERE form_id = $1 GROUP BY 1", form_id)
    finally:
        await conn.close()
    return Counter({row["key"]: int(row["n"]) for row in rows})


def delivery_counts(arrivals: list[Arrival]) -> dict[str, int]:
    """Deliveries per case key (distinct webhook-ids) and resends (one webhook-id again)."""
    ids_by_key: dict[str, set[str]] = defaultdict(set)
    for arrival in arrivals:
        ids_by_key[arrival.key].add(arrival.webhook_id)
    distinct = {arrival.webhook_id for arrival in arrivals}
    return {"cases_delivered": len(ids_by_key),
            "duplicate_deliveries": sum(len(ids) - 1 for ids in ids_by_key.values()),
            "resends": len(arrivals) - len(distinct)}


def recovery(load: Load, arrivals: list[Arrival], fault_at: float) -> dict[str, float]:
    """recovery_s: from the fault to the end of the last sign of it, i.e. the later of the last
    failed request and the last delivery of a case held up (reaching the receiver more than
    SLOW_DELIVERY after ingest accepted it); 0 when the fault showed nowhere."""
    first_arrival: dict[str, float] = {}
    for arrival in arrivals:
        first_arrival.setdefault(arrival.key, arrival.at)
    failures = [t for sent in load.sent.values() for t in sent.failures]
    latencies = {key: first_arrival[key] - sent.accepted_at for key, sent in load.sent.items()
                 if sent.accepted_at is not None and key in first_arrival}
    held_up = [first_arrival[key] for key, latency in latencies.items()
               if latency > SLOW_DELIVERY]
    last_sign = max([*failures, *held_up], default=fault_at)
    return {"recovery_s": round(max(0.0, last_sign - fault_at), 1),
            "failed_requests": len(failures),
            "max_delivery_latency_s": round(max(latencies.values(), default=0.0), 2)}


async def resent_examples(dsn: str, arrivals: list[Arrival], most: int = 3) -> list[dict[str, Any]]:
    """For a few webhook-ids the receiver got more than once: the gaps between the arrivals and
    the delivery's attempts as casestore recorded them (why it was sent again)."""
    times: dict[str, list[float]] = defaultdict(list)
    for arrival in arrivals:
        times[arrival.webhook_id].append(arrival.at)
    resent = [(wid, at) for wid, at in times.items() if len(at) > 1][:most]
    if not resent:
        return []
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        examples = []
        for webhook_id, at in resent:
            rows = await conn.fetch(
                "SELECT a.number, a.started_at, a.duration_ms, a.response_status, a.error "
                "FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id "
                "WHERE d.webhook_id = $1 ORDER BY a.started_at", webhook_id)
            examples.append({"webhook_id": webhook_id,
                             "gaps_s": [round(b - a, 3) for a, b in itertools.pairwise(at)],
                             "attempts": [{"number": r["number"],
                                           "started_at": r["started_at"].isoformat(),
                                           "ms": round(r["duration_ms"]),
                                           "status": r["response_status"], "error": r["error"]}
                                          for r in rows]})
    finally:
        await conn.close()
    return examples
