"""`python -m bench.floor`: what a case costs in the fixed architecture with nothing but its hops.

The performance issue asks for a CPU per delivered case at 200 cases/s that bare hops measured
at saturation suggest is possible. This measures the floor at the rate itself: three minimal
processes in Casewire's shape, on the same libraries and broker settings (aiohttp, aio-pika
with publisher confirms into durable quorum queues, persistent messages, asyncpg, uvloop):

- `ingest`: reads the POST, publishes it (confirmed), answers 200;
- `store`: consumes it, inserts the case row (one statement, committed), publishes the case
  event (confirmed), acks; consumes each delivery record, inserts it, acks;
- `dispatch`: consumes the case event, POSTs it to the receiver, publishes the delivery
  record (confirmed), acks.

No validation, rules, content, signatures, retries, idempotency, outbox or history: the three
messages, two commits and two HTTP requests a delivered case needs at least. Each message is
acked on its own (Casewire coalesces acks, which saves RabbitMQ some CPU). Then Casewire
itself at the same rate on its own stack; rounds alternate, and each figure is the CPU per
delivered case of the three processes, RabbitMQ and Postgres (all their processes, so nothing
else should run meanwhile).
"""

import argparse
import asyncio
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import orjson
from aiohttp import web
from pamqp.commands import Basic

from bench import workload
from bench.cpu import CpuMeter
from bench.limits import broker_limit
from bench.loadgen import Job, LoadGenerator
from bench.procs import Children, free_port, wait_http
from bench.profiles import Profile
from bench.side_by_side import WARM_UP, arrived, side, wait_arrived
from bench.stack import database_url
from services.casestore.migrate import create_database, drop_database
from shared.broker import PERSISTENT
from shared.settings import Settings

ROLES = ("ingest", "store", "dispatch")
QUEUES = ("commands", "events", "records")
PREFETCH = 64
PROPERTIES = Basic.Properties(content_type="application/json", delivery_mode=PERSISTENT)
BROKER_PROFILE = Profile(name="floor", broker_concurrency=(64, 256))
SCHEMA = ("CREATE TABLE cases (id uuid PRIMARY KEY, data jsonb NOT NULL);"
          "CREATE TABLE deliveries (id uuid PRIMARY KEY, case_id uuid NOT NULL, status int)")


@dataclass(frozen=True)
class Floor:
    """Where the floor's processes find each other."""

    amqp_url: str
    database_url: str
    prefix: str
    receiver_url: str

    def queue(self, name: str) -> str:
        return f"{self.prefix}.{name}"


async def _channel(floor: Floor) -> tuple[aio_pika.abc.AbstractConnection,
                                          aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(floor.amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=PREFETCH)
    for name in QUEUES:
        await channel.declare_queue(floor.queue(name), durable=True,
                                    arguments={"x-queue-type": "quorum"})
    return connection, channel


async def _publish(channel: aio_pika.abc.AbstractChannel, floor: Floor, queue: str,
                   body: bytes) -> None:
    """Confirmed, on the cheaper path Casewire's publisher takes (pamqp properties)."""
    underlay = await channel.get_underlay_channel()
    await underlay.basic_publish(body, exchange="", routing_key=floor.queue(queue),
                                 properties=PROPERTIES)


async def run_ingest(floor: Floor, port: int) -> None:
    _, channel = await _channel(floor)

    async def hook(request: web.Request) -> web.Response:
        await _publish(channel, floor, "commands", await request.read())
        return web.Response(body=b"{}", content_type="application/json")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/ready", _answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def _answer(_: web.Request) -> web.Response:
    return web.Response(body=b"{}", content_type="application/json")


async def run_store(floor: Floor) -> None:
    _, channel = await _channel(floor)
    pool = await asyncpg.create_pool(floor.database_url, min_size=2, max_size=4)
    assert pool is not None

    async def command(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        case_id = uuid.uuid4()
        await pool.execute("INSERT INTO cases (id, data) VALUES ($1, $2::jsonb)", case_id,
                           message.body.decode())
        event = orjson.dumps({"id": str(case_id), "data": orjson.loads(message.body)})
        await _publish(channel, floor, "events", event)
        await message.ack()

    async def record(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        delivered = orjson.loads(message.body)
        await pool.execute("INSERT INTO deliveries (id, case_id, status) VALUES ($1, $2, $3)",
                           uuid.uuid4(), uuid.UUID(delivered["case_id"]), delivered["status"])
        await message.ack()

    await (await channel.get_queue(floor.queue("commands"))).consume(command)
    await (await channel.get_queue(floor.queue("records"))).consume(record)
    await asyncio.Event().wait()


async def run_dispatch(floor: Floor) -> None:
    _, channel = await _channel(floor)
    http = aiohttp.ClientSession()

    async def event(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        case = orjson.loads(message.body)
        data = case["data"]
        content = {"t": data["text-field"], "priority": data["priority"]}
        async with http.post(f"{floor.receiver_url}/deliver", json=content) as resp:
            await resp.read()
            status = resp.status
        await _publish(channel, floor, "records",
                       orjson.dumps({"case_id": case["id"], "status": status}))
        await message.ack()

    await (await channel.get_queue(floor.queue("events"))).consume(event)
    await asyncio.Event().wait()


@dataclass(frozen=True)
class Target:
    """What a round posts to and measures: one ingest port, its processes and its receiver."""

    label: str
    port: int
    path: str
    pids: dict[str, list[int]]
    receiver_url: str
    database_url: str


@contextlib.asynccontextmanager
async def casewire_target(children: Children, settings: Settings) -> AsyncIterator[Target]:
    async with side("casewire", Path("."), children, settings) as s:
        yield Target("casewire", s.stack.ports["ingest"], s.path, s.stack.pids_by_service(),
                     s.receiver_url, s.stack.database_url)


@contextlib.asynccontextmanager
async def floor_target(children: Children, settings: Settings,
                       roles: tuple[str, ...] = ROLES) -> AsyncIterator[Target]:
    """The floor's processes (`roles` of them) and receiver."""
    port, receiver_port = free_port(), free_port()
    receiver = children.start("floor-receiver", ["-m", "bench.receiver", str(receiver_port)])
    run_id = secrets.token_hex(4)
    floor = Floor(settings.amqp_url, database_url(settings.database_url,
                                                  f"casewire_floor_{run_id}"),
                  f"casewire-floor-{run_id}", f"http://127.0.0.1:{receiver_port}")
    await create_database(floor.database_url)
    conn = await asyncpg.connect(floor.database_url)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()
    args = [floor.amqp_url, floor.database_url, floor.prefix, floor.receiver_url]
    started = {role: children.start(f"floor-{role}", ["-m", "bench.floor", "--role", role,
                                                      str(port), *args]) for role in roles}
    try:
        await wait_http(receiver, f"{floor.receiver_url}/stats")
        await wait_http(started["ingest"], f"http://127.0.0.1:{port}/ready")
        yield Target("floor", port, "/hook", {r: [c.pid] for r, c in started.items()},
                     floor.receiver_url, floor.database_url)
    finally:
        for child in [*started.values(), receiver]:
            children.stop(child)
        await _delete_queues(floor)
        await drop_database(floor.database_url)


async def _delete_queues(floor: Floor) -> None:
    connection = await aio_pika.connect(floor.amqp_url)
    try:
        channel = await connection.channel()
        for name in QUEUES:
            await channel.queue_delete(floor.queue(name))
    finally:
        await connection.close()


async def measure(target: Target, gen: LoadGenerator, cases: int, rate: float,
                  id_base: int) -> dict[str, float]:
    """CPU ms per delivered case of each process group, RabbitMQ and Postgres."""
    async with aiohttp.ClientSession() as http:
        before = await arrived(http, target.receiver_url)
        meter = CpuMeter(target.pids)
        meter.start()
        started = time.monotonic()
        load = await gen.run(Job(port=target.port, path=target.path,
                                 body=workload.BODY_TEMPLATE, connections=32, duration=3600,
                                 max_requests=cases, id_base=id_base, rate=rate))
        if load.ok != cases:
            raise RuntimeError(f"{target.label}: {load.ok} of {cases} accepted "
                               f"({load.statuses})")
        await wait_arrived(http, target.receiver_url, before + cases, target.label)
        shares = meter.stop()
        wall = time.monotonic() - started
    groups = [*target.pids, "rabbitmq", "postgres"]
    return {name: shares[name] * wall / cases * 1000 for name in groups}


async def saturate(target: Target, gen: LoadGenerator, cases: int, id_base: int
                   ) -> tuple[float, float]:
    """(accepted/s, stored/s) for `cases` posted as fast as 128 connections go."""
    conn = await asyncpg.connect(target.database_url)
    try:
        before = await conn.fetchval("SELECT count(*) FROM cases")
        started = time.monotonic()
        load = await gen.run(Job(port=target.port, path=target.path,
                                 body=workload.BODY_TEMPLATE, connections=128, duration=3600,
                                 max_requests=cases, id_base=id_base))
        deadline = time.monotonic() + 300
        while await conn.fetchval("SELECT count(*) FROM cases") < before + load.ok:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target.label}: cases stopped short of {load.ok}")
            await asyncio.sleep(0.05)
        return load.ok_per_second, load.ok / (time.monotonic() - started)
    finally:
        await conn.close()


async def _ingest_alone(children: Children, settings: Settings, gen: LoadGenerator,
                        cases: int) -> float:
    """Accepted/s of the floor's ingest with nothing else running (its queue just fills)."""
    async with floor_target(children, settings, roles=("ingest",)) as target:
        load = await gen.run(Job(port=target.port, path=target.path,
                                 body=workload.BODY_TEMPLATE, connections=128, duration=3600,
                                 max_requests=cases, id_base=9 * 10**11))
    return load.ok_per_second


async def cost_side_by_side(children: Children, settings: Settings, gen: LoadGenerator,
                            rate: float, cases: int, rounds: int) -> dict[str, Any]:
    """CPU ms per delivered case of the floor and of Casewire at `rate`, each on a fresh stack,
    rounds alternating (for `make bench`): the medians and Casewire / floor per round."""
    totals: dict[str, list[float]] = {"floor": [], "casewire": []}
    parts: dict[str, list[dict[str, float]]] = {"floor": [], "casewire": []}
    for number in range(rounds):
        for label in ("floor", "casewire") if number % 2 == 0 else ("casewire", "floor"):
            opened = floor_target if label == "floor" else casewire_target
            async with opened(children, settings) as target:
                base = (80 + 3 * number) * 10**10
                await measure(target, gen, WARM_UP, rate, base)
                await asyncio.sleep(2)
                spent = await measure(target, gen, cases, rate, base + 10**10)
                totals[label].append(sum(spent.values()))
                parts[label].append(spent)
    ratios = [c / f for c, f in zip(totals["casewire"], totals["floor"], strict=True)]
    return {"rate": rate, "cases": cases, "rounds": rounds,
            "floor_ms": statistics.median(totals["floor"]),
            "casewire_ms": statistics.median(totals["casewire"]),
            "ratio": statistics.median(ratios), "ratios": ratios,
            # Each process group's median over the rounds (for the chart).
            "floor_parts": _median_parts(parts["floor"]),
            "casewire_parts": _median_parts(parts["casewire"])}


def _median_parts(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}


async def compare(rounds: int, cases: int, rate: float, burst: int) -> None:
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="casewire-floor-logs-") as logs:
        children = Children(Path(logs))
        gen = LoadGenerator(1)
        gen.start()
        totals: dict[str, list[float]] = {"floor": [], "casewire": []}
        rates: dict[str, list[tuple[float, float]]] = {"floor": [], "casewire": []}
        try:
            for number in range(rounds):
                for label in ("floor", "casewire") if number % 2 == 0 else ("casewire", "floor"):
                    opened = (floor_target if label == "floor" else casewire_target)
                    async with opened(children, settings) as target:
                        await measure(target, gen, WARM_UP, rate, (3 * number + 1) * 10**10)
                        await asyncio.sleep(2)
                        spent = await measure(target, gen, cases, rate,
                                              (3 * number + 2) * 10**10)
                        if burst:
                            await asyncio.sleep(2)
                            rates[label].append(await saturate(target, gen, burst,
                                                               (3 * number + 3) * 10**10))
                    totals[label].append(sum(spent.values()))
                    print(f"round {number + 1} {label}: {sum(spent.values()):.2f} ms per case ("
                          + ", ".join(f"{k} {v:.2f}" for k, v in spent.items()) + ")"
                          + (f"; at saturation {rates[label][-1][0]:,.0f} accepted/s, "
                             f"{rates[label][-1][1]:,.0f} stored/s" if burst else ""),
                          flush=True)
            bare = (await broker_limit(settings.amqp_url, f"casewire-floor-{secrets.token_hex(4)}",
                                       BROKER_PROFILE))["best"]["rate"] if burst else 0.0
            alone = await _ingest_alone(children, settings, gen, burst) if burst else 0.0
        finally:
            gen.stop()
            children.stop_all()
    floor, casewire = (statistics.median(totals[k]) for k in ("floor", "casewire"))
    ratios = [c / f for c, f in zip(totals["casewire"], totals["floor"], strict=True)]
    print(f"at {rate:g} cases/s, median of {rounds} rounds: floor {floor:.2f} ms per delivered "
          f"case, Casewire {casewire:.2f} ms, Casewire / floor {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}-{max(ratios):.2f})")
    if burst:
        print(f"bare broker {bare:,.0f} msg/s; of it, median of {rounds} rounds: " + "; ".join(
            f"{label} ingest {statistics.median(r[0] for r in got) / bare:.2f}, to storage "
            f"{statistics.median(r[1] for r in got) / bare:.2f}" for label, got in rates.items())
            + f"; the floor's ingest alone (nothing consuming) {alone:,.0f} accepted/s, "
              f"{alone / bare:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cases", type=int, default=6000, help="cases per round")
    parser.add_argument("--rate", type=float, default=200.0, help="cases a second")
    parser.add_argument("--burst", type=int, default=5000,
                        help="cases posted at once per round for the saturation figures (0: none)")
    parser.add_argument("--role", choices=ROLES, help=argparse.SUPPRESS)
    parser.add_argument("role_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.role:
        port, amqp_url, dsn, prefix, receiver_url = args.role_args
        floor = Floor(amqp_url, dsn, prefix, receiver_url)
        role = {"ingest": lambda: run_ingest(floor, int(port)),
                "store": lambda: run_store(floor), "dispatch": lambda: run_dispatch(floor)}
        uvloop.run(role[args.role]())
        return
    try:
        uvloop.run(compare(args.rounds, args.cases, args.rate, args.burst))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
