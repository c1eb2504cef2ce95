"""`make topology`: Casewire in its production topology on this machine, under faults.

Builds the image (`make image`), starts a three-node RabbitMQ cluster and a Postgres primary
with a synchronous standby on loopback ports of their own, runs `casewire migrate` and two
replicas of each service from the image, then the scenarios (bench/topology/scenarios.py),
and writes bench/results/topology.json. Everything it started is stopped and removed at the
end, whatever happened; the machine's own Postgres and RabbitMQ are never touched. Exits 1 if
any scenario lost or duplicated a case or lost a delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import free_port
from bench.topology import scenarios
from bench.topology.ceiling import measure as measure_ceiling
from bench.topology.image import IMAGE, ImageRoot, build
from bench.topology.postgres import SYNCHRONOUS, PostgresPair
from bench.topology.rabbit import RabbitCluster
from bench.topology.replicas import PREFIX, REPLICAS, RUN_SETTINGS, SERVICES, Replicas
from bench.topology.tap import EventTap
from bench.topology.traffic import Receiver

RESULTS = Path(__file__).resolve().parents[1] / "results"
DATABASE = "casewire_topology"
MUST_BE_ZERO = ("lost", "duplicate_cases", "deliveries_lost", "duplicate_deliveries")


async def run_all(work: Path, names: list[str]) -> list[dict[str, Any]]:
    """The per-form counter's ceiling first, then the scenarios' results."""
    rabbit = RabbitCluster(work, secrets.token_hex(3))
    postgres = PostgresPair(work / "postgres")
    image = ImageRoot()
    receiver = Receiver()
    tap = EventTap(PREFIX)
    replicas: Replicas | None = None
    try:
        print("topology: starting three RabbitMQ nodes and Postgres with a standby",
              file=sys.stderr)
        await asyncio.gather(asyncio.to_thread(rabbit.start), asyncio.to_thread(postgres.start))
        replicas = Replicas(image, postgres.dsn(DATABASE), rabbit.urls, work / "logs")
        print(replicas.migrate().strip().splitlines()[-1], file=sys.stderr)
        await receiver.start(free_port())
        await replicas.start_all()
        await tap.start(rabbit.urls)
        topology = scenarios.Topology(rabbit, postgres, replicas, receiver, tap, DATABASE)
        paths = {name: await topology.form(name, timers=name == "replicas-steady")
                 for name in names}
        await topology.form("counter-ceiling")
        # Meanwhile (seconds), the ingest replicas learn of the new webhooks (form.changed).
        ceiling = await measure_ceiling(postgres.primary_dsn(DATABASE), "counter-ceiling")
        print(f"topology: one form's counter row: {ceiling}", file=sys.stderr)
        results: list[dict[str, Any]] = [{"name": "counter-ceiling", **ceiling}]
        for name in names:
            print(f"topology: {name}", file=sys.stderr)
            result = await scenarios.run(topology, name, paths[name], scenarios.SCENARIOS[name])
            print(json.dumps(result), file=sys.stderr)
            results.append(result)
        return results
    finally:
        if replicas is not None:
            replicas.stop_all()
        await receiver.stop()
        await cleanup(tap)
        rabbit.stop()
        postgres.stop()
        image.close()


async def cleanup(tap: EventTap) -> None:
    try:
        await asyncio.wait_for(tap.stop(), 10)
    except Exception as exc:  # the cluster goes away with its data directories anyway
        print(f"topology: tap not removed ({exc!r})", file=sys.stderr)


def report(measured: list[dict[str, Any]], took: float) -> dict[str, Any]:
    ceiling, results = measured[0], measured[1:]
    return {
        "rabbitmq_nodes": 3, "postgres_standbys": 1,
        "replicas": dict.fromkeys(SERVICES, REPLICAS), "from_image": True, "image": IMAGE,
        "load": {"cases_per_second": scenarios.RATE, "seconds": scenarios.SECONDS,
                 "fault_at_s": scenarios.FAULT_AT},
        "postgres_primary_settings": list(SYNCHRONOUS), "settings": RUN_SETTINGS,
        "took_s": round(took), "form_counter_ceiling": {k: v for k, v in ceiling.items()
                                                        if k != "name"},
        "scenarios": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(scenarios.SCENARIOS),
                        help="run only these scenarios (in the usual order)")
    args = parser.parse_args()
    names = [n for n in scenarios.SCENARIOS if not args.only or n in args.only]
    started = time.monotonic()
    build()
    work = Path(tempfile.mkdtemp(prefix="casewire-topology-"))
    work.chmod(0o755)  # the postgres user reaches its data directories through it
    try:
        results = asyncio.run(run_all(work, names))
    finally:
        keep_logs(work)
        shutil.rmtree(work, ignore_errors=True)
    document = report(results, time.monotonic() - started)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "topology.json").write_text(json.dumps(document, indent=2) + "\n")
    print(table(document["scenarios"]), file=sys.stderr)
    print(f"topology: took {document['took_s']} s; bench/results/topology.json", file=sys.stderr)
    if any(r[key] for r in document["scenarios"] for key in MUST_BE_ZERO):
        sys.exit(1)


def keep_logs(work: Path) -> None:
    """The services' and the nodes' logs of the last run, for reading after it (not in git)."""
    kept = RESULTS / "topology-logs"
    shutil.rmtree(kept, ignore_errors=True)
    for log in [*work.glob("logs/*.log"), *work.glob("rabbit-*/log/*.log"), *work.glob("*.out"),
                *work.glob("postgres/*.log")]:
        target = kept / log.relative_to(work)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, target)


def table(results: list[dict[str, Any]]) -> str:
    columns = ("name", "accepted", "stored", "lost", "duplicate_cases", "deliveries_lost",
               "duplicate_deliveries", "resends", "recovery_s")
    rows = [columns, *([str(r[c]) for c in columns] for r in results)]
    return "\n".join(" | ".join(row) for row in rows)


if __name__ == "__main__":
    main()
