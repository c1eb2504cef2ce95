"""`python -m bench.side_by_side BASE [OTHER]`: two versions of Casewire, one delivery burst on
both at the same moment, their ratio.

These hosts are shared: the same code delivers 2x faster in one minute than in the next, so two
runs of `make bench` cannot tell a 10% change from the drift. Here both versions run at once,
each on its own stack (database, queue prefix, receiver, load generator), and each round posts
the same burst to both at the same moment: the drift hits both, and their ratio holds. Every
round starts fresh stacks. BASE and OTHER are git revisions (checked out into temporary
worktrees); OTHER defaults to this checkout as it is, uncommitted changes included.

Per round and side: cases delivered per second (from the first POST to the last arrival), the
CPU milliseconds the three services spent per delivered case, and those of the Postgres
backends serving its database. Postgres's shared processes (WAL writer, checkpointer) and
RabbitMQ serve both sides, so their CPU cannot be split and is in neither figure. With `--rate`
the cases are posted at that rate to each side instead of all at once, as in `make bench`'s
soak: then the CPU per case is what to compare. With `--receiver-ms` the receiver answers after
that long, as a distant one does: then the delivered cases/s are what to compare.
"""

import argparse
import asyncio
import contextlib
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from bench import workload
from bench.loadgen import Job, LoadGenerator
from bench.procs import Child, Children, cpu_seconds, free_port, wait_http
from bench.stack import CasewireStack, database_url
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
WARM_UP = 300


@dataclass
class Side:
    label: str
    code_dir: Path
    stack: CasewireStack
    receiver: Child
    receiver_url: str
    path: str = ""

    async def arrived(self, http: aiohttp.ClientSession) -> int:
        return await arrived(http, self.receiver_url)

    async def wait_arrived(self, http: aiohttp.ClientSession, target: int) -> float:
        return await wait_arrived(http, self.receiver_url, target, self.label)

    async def backends(self) -> list[int]:
        """The Postgres backends serving this side's database (its services' pools)."""
        conn = await asyncpg.connect(self.stack.database_url)
        try:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity"
                                    " WHERE datname = current_database()"
                                    " AND pid <> pg_backend_pid()")
        finally:
            await conn.close()
        return [int(r["pid"]) for r in rows]

    def job(self, cases: int, id_base: int, rate: float | None = None) -> Job:
        return Job(port=self.stack.ports["ingest"], path=self.path, body=workload.BODY_TEMPLATE,
                   connections=32, duration=3600, max_requests=cases, id_base=id_base,
                   rate=rate)


# Where a side's automation sends: the receiver's /deliver, or with --receiver-ms a distant
# receiver (bench/distant.py) whose deliveries it counts under this bucket.
DISTANT_BUCKET = "side"


async def arrived(http: aiohttp.ClientSession, receiver_url: str) -> int:
    """Deliveries the receiver (`bench.receiver`) has had."""
    async with http.get(f"{receiver_url}/stats") as resp:
        stats = await resp.json()
        return int(stats["count"]) + int(stats["buckets"].get(DISTANT_BUCKET, 0))


async def wait_arrived(http: aiohttp.ClientSession, receiver_url: str, target: int,
                       label: str) -> float:
    """When `target` deliveries had arrived (monotonic)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if await arrived(http, receiver_url) >= target:
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise RuntimeError(f"{label}: deliveries stopped short of {target}")


@contextlib.contextmanager
def checkout(revision: str | None) -> Iterator[Path]:
    """This checkout (None), or `revision` in a temporary worktree removed afterwards."""
    if revision is None:
        yield ROOT
        return
    git = shutil.which("git") or "git"
    with tempfile.TemporaryDirectory(prefix="casewire-side-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run([git, "-C", str(ROOT), "worktree", "add", "--detach", "-q",  # noqa: S603 - a revision the operator named
                        str(tree), revision], check=True)
        try:
            yield tree
        finally:
            subprocess.run([git, "-C", str(ROOT), "worktree", "remove", "--force",  # noqa: S603
                            str(tree)], check=False)


@contextlib.asynccontextmanager
async def side(label: str, code_dir: Path, children: Children, settings: Settings,
               receiver_ms: int | None = None) -> AsyncIterator[Side]:
    port = free_port()
    receiver = children.start(f"receiver-{label}", ["-m", "bench.receiver", str(port)])
    receiver_url = f"http://127.0.0.1:{port}"
    run_id = secrets.token_hex(4)
    stack = CasewireStack(run_id, settings.amqp_url,
                          database_url(settings.database_url, f"casewire_bench_{run_id}"),
                          children, code_dir=code_dir)
    try:
        await wait_http(receiver, f"{receiver_url}/stats")
        await stack.start()
        forms = await stack.create_forms(
            f"{receiver_url}/deliver" if receiver_ms is None
            else f"{receiver_url}/distant/{DISTANT_BUCKET}?ms={receiver_ms}")
        yield Side(label, code_dir, stack, receiver, receiver_url, forms.delivery_url)
    finally:
        await stack.stop()
        children.stop(receiver)


Figures = tuple[float, float, float]  # cases/s; CPU ms per case: services, Postgres backends


@dataclass
class Measured:
    figures: Figures
    services: dict[str, float]  # CPU ms per case of each service


async def burst(sides: list[Side], gens: list[LoadGenerator], cases: int, id_base: int,
                http: aiohttp.ClientSession, rate: float | None = None) -> list[Measured]:
    """Each side's figures, its cases posted with the others' (all at once, or at `rate` a
    second). A Postgres backend that started meanwhile counts whole."""
    before = [await s.arrived(http) for s in sides]
    pids = [s.stack.pids() for s in sides]
    cpu = [{name: cpu_seconds(p) for name, p in group.items()} for group in pids]
    pg_cpu = [{p: cpu_seconds(p) for p in await s.backends()} for s in sides]
    started = time.monotonic()
    loads = await asyncio.gather(*(g.run(s.job(cases, id_base, rate))
                                   for s, g in zip(sides, gens, strict=True)))
    for s, load in zip(sides, loads, strict=True):
        if load.ok != cases:
            raise RuntimeError(f"{s.label}: {load.ok} of {cases} accepted ({load.statuses})")
    ended = await asyncio.gather(*(s.wait_arrived(http, b + cases)
                                   for s, b in zip(sides, before, strict=True)))
    measured = []
    for side_, end, group, spent, pg in zip(sides, ended, pids, cpu, pg_cpu, strict=True):
        each = {name: (cpu_seconds(p) - spent[name]) / cases * 1000 for name, p in group.items()}
        postgres = sum(cpu_seconds(p) - pg.get(p, 0.0) for p in await side_.backends())
        measured.append(Measured((cases / (end - started), sum(each.values()),
                                  postgres / cases * 1000), each))
    return measured


async def round_trip(number: int, trees: list[tuple[str, Path]], gens: list[LoadGenerator],
                     children: Children, settings: Settings, cases: int, rate: float | None,
                     receiver_ms: int | None = None) -> dict[str, Measured]:
    async with contextlib.AsyncExitStack() as stack:
        # Which side starts first alternates, so neither is always the one with warm caches.
        order = trees if number % 2 == 0 else trees[::-1]
        sides = [await stack.enter_async_context(side(label, code, children, settings,
                                                      receiver_ms))
                 for label, code in order]
        async with aiohttp.ClientSession() as http:
            await burst(sides, gens, WARM_UP, (2 * number + 1) * 10**10, http)
            await asyncio.sleep(2)
            measured = await burst(sides, gens, cases, (2 * number + 2) * 10**10, http, rate)
        return {s.label: m for s, m in zip(sides, measured, strict=True)}


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


async def compare(base: str, other: str | None, rounds: int, cases: int,
                  rate: float | None, receiver_ms: int | None = None) -> None:
    settings = Settings()
    other_label = other or "this checkout"
    with checkout(base) as base_dir, checkout(other) as other_dir, \
            tempfile.TemporaryDirectory(prefix="casewire-side-logs-") as logs:
        children = Children(Path(logs))
        gens = [LoadGenerator(1), LoadGenerator(1)]
        for gen in gens:
            gen.start()
        ratios: list[Figures] = []
        try:
            trees = [(base, base_dir), (other_label, other_dir)]
            for number in range(rounds):
                got = await round_trip(number, trees, gens, children, settings, cases, rate,
                                       receiver_ms)
                a, b = got[base].figures, got[other_label].figures
                ratios.append((b[0] / a[0], b[1] / a[1], b[2] / a[2]))
                print(f"round {number + 1}: " + ", ".join(
                    f"{label} {m.figures[0]:.1f} cases/s at {m.figures[1]:.2f} ms ("
                    + " ".join(f"{name} {ms:.2f}" for name, ms in sorted(m.services.items()))
                    + f"; + Postgres {m.figures[2]:.2f} ms)"
                    for label, m in ((base, got[base]), (other_label, got[other_label]))),
                      flush=True)
        finally:
            for gen in gens:
                gen.stop()
            children.stop_all()
    print(f"{other_label} against {base}, median (range) of {rounds} rounds: delivered cases/s "
          f"{_spread([r[0] for r in ratios])}, services' CPU per case "
          f"{_spread([r[1] for r in ratios])}, their Postgres backends' "
          f"{_spread([r[2] for r in ratios])}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.side_by_side", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="git revision to compare against")
    parser.add_argument("other", nargs="?", help="git revision (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cases", type=int, default=3000, help="cases per side and round")
    parser.add_argument("--rate", type=float,
                        help="post at this many cases a second per side (default: all at once)")
    parser.add_argument("--receiver-ms", type=int,
                        help="the receiver answers after this many ms (default: at once)")
    args = parser.parse_args()
    try:
        asyncio.run(compare(args.base, args.other, args.rounds, args.cases, args.rate,
                            args.receiver_ms))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
