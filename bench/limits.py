"""The limits: what this machine does with the same tools and settings but without Casewire.

- the load generator's own ceiling, against a raw asyncio server;
- bare aiohttp answering `200 {}` to the same POST body, under the same load generator;
- bare broker: the same persistent message, published with confirms through aio-pika into the
  same quorum-queue topology (`shared.broker`), at several concurrencies, best one kept;
- bare database: the same case row through asyncpg, one row per commit, executemany in
  transactions, and COPY, best one kept.

HTTP servers are pinned to one core and the load generator to the others (when there are any),
so neither takes CPU from the other.
"""

import asyncio
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

import aio_pika
import asyncpg
import orjson

from bench import workload
from bench.loadgen import Job, LoadGenerator, LoadResult
from bench.procs import Children, free_port, memory_kib
from bench.profiles import Profile
from bench.stats import percentiles
from services.casestore.migrate import drop_database, migrate
from shared import broker_topology
from shared.events import CASE_CREATE_REQUESTED

LIMIT_FORM = "bench-limit"


@dataclass(frozen=True)
class Pinning:
    """Which cores the server and the load generator get (None: no pinning, one core only)."""

    server: tuple[int, ...] | None
    loadgen: tuple[int, ...] | None

    @classmethod
    def split(cls) -> "Pinning":
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(None, None)
        return cls((cpus[0],), tuple(cpus[1:]))

    def describe(self) -> str:
        if self.server is None:
            return "no pinning (one core)"
        return (f"server on CPU {list(self.server)}, "
                f"load generator on CPU {list(self.loadgen or ())}")


def http_summary(result: LoadResult) -> dict[str, Any]:
    return {"rate": result.ok_per_second, "ok": result.ok, "sent": result.sent,
            "statuses": {str(k): v for k, v in result.statuses.items()},
            "errors": result.errors, "latency_ms": percentiles(result.latencies)}


class HttpLimits:
    """The reference servers, one at a time, under the benchmark's load generator."""

    def __init__(self, children: Children, gen: LoadGenerator, profile: Profile):
        self.children = children
        self.gen = gen
        self.profile = profile
        self.pinning = Pinning.split()

    async def _with_server(self, kind: str, job_for: Any) -> tuple[LoadResult, int]:
        port = free_port()
        cpus = set(self.pinning.server) if self.pinning.server else None
        child = self.children.start(f"bare-{kind}", ["-m", "bench.servers", kind, str(port)],
                                    cpus=cpus)
        try:
            await _wait_port(port)
            # A short warm-up, so the figures are of a running server, not a starting one.
            await self.gen.run(job_for(port, 0.5))
            result: LoadResult = await self.gen.run(job_for(port, None))
            return result, memory_kib(child.pid)[1]
        finally:
            self.children.stop(child)

    def _closed(self, port: int, seconds: float) -> Job:
        return Job(port=port, path="/hooks/bench", body=workload.BODY_TEMPLATE,
                   connections=self.profile.connections, duration=seconds,
                   cpus=self.pinning.loadgen)

    async def saturate(self, kind: str, seconds: float) -> tuple[LoadResult, int]:
        return await self._with_server(
            kind, lambda port, warm: self._closed(port, warm or seconds))

    async def latency_at(self, rate: float, seconds: float) -> LoadResult:
        """Bare aiohttp at a fixed rate: the floor under ingest's latency at that rate."""

        def job(port: int, warm: float | None) -> Job:
            return Job(port=port, path="/hooks/bench", body=workload.BODY_TEMPLATE,
                       connections=self.profile.open_loop_connections,
                       duration=warm or seconds, rate=rate, cpus=self.pinning.loadgen)

        result, _ = await self._with_server("aiohttp", job)
        return result


async def _wait_port(port: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


# The broker

async def broker_limit(amqp_url: str, prefix: str, profile: Profile) -> dict[str, Any]:
    """Confirmed persistent publishes of ingest's message into casestore's quorum queue."""
    names = broker_topology.Names(prefix)
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await broker_topology.declare_work_queue(channel, names, "casestore", 5)
        exchange = await channel.get_exchange(names.events)
        event = workload.envelope(LIMIT_FORM, 1)
        body = event.to_bytes()
        runs: list[dict[str, Any]] = []
        for concurrency in profile.broker_concurrency:
            latencies: list[float] = []
            count = await _publish_for(exchange, body, event.correlation_id, concurrency,
                                       profile.broker_seconds, latencies)
            runs.append({"concurrency": concurrency, "rate": count / profile.broker_seconds,
                         "latency_ms": percentiles(latencies)})
            await queue.purge()
        best = max(runs, key=lambda r: float(r["rate"]))
        single = next((r for r in runs if r["concurrency"] == 1), None)
        return {"message_bytes": len(body), "runs": runs, "best": best, "one_at_a_time": single}
    finally:
        await _delete_topology(connection, names)
        await connection.close()


async def _publish_for(exchange: aio_pika.abc.AbstractExchange, body: bytes, correlation: str,
                       concurrency: int, seconds: float, latencies: list[float]) -> int:
    stop = time.monotonic() + seconds
    counter = itertools.count()
    sent = 0

    async def publisher() -> None:
        nonlocal sent
        while (started := time.monotonic()) < stop:
            message = aio_pika.Message(
                body, content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(next(counter)), correlation_id=correlation,
                type=CASE_CREATE_REQUESTED)
            await exchange.publish(message, routing_key=CASE_CREATE_REQUESTED, mandatory=True,
                                   timeout=10)
            latencies.append(time.monotonic() - started)
            sent += 1

    await asyncio.gather(*(publisher() for _ in range(concurrency)))
    return sent


async def _delete_topology(connection: aio_pika.abc.AbstractConnection,
                           names: broker_topology.Names) -> None:
    channel = await connection.channel()
    for queue in (*map(names.queue, broker_topology.WORK_QUEUES), names.dead_letters):
        await channel.queue_delete(queue)
    for exchange in (names.events, names.dead_letter):
        await channel.exchange_delete(exchange)
    await channel.close()


# The database

def _text_jsonb(value: Any) -> str:
    return orjson.dumps(value).decode()


def _binary_jsonb(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value)


def _binary_jsonb_decode(value: bytes) -> Any:
    return orjson.loads(value[1:])


async def _text_codec(conn: asyncpg.Connection) -> None:
    """Casewire's own codec (shared.db): jsonb as orjson text."""
    await conn.set_type_codec("jsonb", encoder=_text_jsonb, decoder=orjson.loads,
                              schema="pg_catalog")


async def _binary_codec(conn: asyncpg.Connection) -> None:
    """COPY needs jsonb in binary form: a version byte, then the JSON."""
    await conn.set_type_codec("jsonb", encoder=_binary_jsonb, decoder=_binary_jsonb_decode,
                              schema="pg_catalog", format="binary")


INSERT_CASE = ("INSERT INTO cases (id, form_id, case_number, status, data, creator)"
               " VALUES ($1, $2, $3, $4, $5, $6)")


async def database_limit(dsn: str, profile: Profile) -> dict[str, Any]:
    """The case row in casestore's own schema (a throwaway database migrated like Casewire's)."""
    await migrate(dsn)
    most = max((*profile.db_single_connections,
                *(c for c, _ in profile.db_executemany), *(c for c, _ in profile.db_copy)))
    text_pool = await asyncpg.create_pool(dsn, min_size=most, max_size=most, init=_text_codec)
    binary_pool = await asyncpg.create_pool(dsn, min_size=4, max_size=most, init=_binary_codec)
    assert text_pool is not None
    assert binary_pool is not None
    numbers = itertools.count(1)
    try:
        async with text_pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO forms (id, name, sections, fields, statuses)"
                " VALUES ($1, 'limit', '[]', '[]', '{registered}')", LIMIT_FORM)
        runs: list[dict[str, Any]] = []
        for conns in profile.db_single_connections:
            runs.append(await _db_run(text_pool, "single-row commits", conns, 1, profile,
                                      numbers, _insert_one))
        for conns, batch in profile.db_executemany:
            runs.append(await _db_run(text_pool, "executemany in a transaction", conns, batch,
                                      profile, numbers, _insert_many))
        for conns, batch in profile.db_copy:
            runs.append(await _db_run(binary_pool, "COPY", conns, batch, profile, numbers,
                                      _copy))
    finally:
        await text_pool.close()
        await binary_pool.close()
        await drop_database(dsn)
    best = max(runs, key=lambda r: float(r["rate"]))
    single = [r for r in runs if r["method"] == "single-row commits"]
    return {"runs": runs, "best": best,
            "best_single_row": max(single, key=lambda r: float(r["rate"])) if single else None,
            "one_commit": next((r for r in single if r["connections"] == 1), None)}


async def _insert_one(conn: asyncpg.pool.PoolConnectionProxy, rows: list[tuple[Any, ...]]
                      ) -> None:
    await conn.execute(INSERT_CASE, *rows[0])


async def _insert_many(conn: asyncpg.pool.PoolConnectionProxy, rows: list[tuple[Any, ...]]
                       ) -> None:
    async with conn.transaction():
        await conn.executemany(INSERT_CASE, rows)


async def _copy(conn: asyncpg.pool.PoolConnectionProxy, rows: list[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table("cases", records=rows, columns=workload.CASE_COLUMNS)


async def _db_run(pool: asyncpg.Pool, method: str, conns: int, batch: int, profile: Profile,
                  numbers: "itertools.count[int]", write: Any) -> dict[str, Any]:
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE cases CASCADE")  # each run starts on an empty table
    stop = time.monotonic() + profile.db_seconds
    latencies: list[float] = []
    written = 0

    async def writer() -> None:
        nonlocal written
        async with pool.acquire() as conn:
            while time.monotonic() < stop:
                rows = [workload.case_row(LIMIT_FORM, next(numbers)) for _ in range(batch)]
                started = time.monotonic()
                await write(conn, rows)
                latencies.append(time.monotonic() - started)
                written += batch

    started = time.monotonic()
    await asyncio.gather(*(writer() for _ in range(conns)))
    elapsed = time.monotonic() - started
    return {"method": method, "connections": conns, "batch": batch, "rate": written / elapsed,
            "latency_ms": percentiles(latencies)}
