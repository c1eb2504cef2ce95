"""`python -m bench [--quick]`: limits, then Casewire, then one table, JSON, a PNG and SVG charts.

Exit status: 0 when every check passed, 1 when something was lost (or a service died, or a
queue did not drain), 2 when the benchmark itself could not run, 130 on Ctrl-C.
"""

import argparse
import asyncio
import contextlib
import signal
import sys
import time
import traceback
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import checks, floor, limits, machine, report
from bench.casewire import CasewireBench, Monitor
from bench.loadgen import LoadGenerator
from bench.procs import Children, free_port, wait_http
from bench.profiler import Profiler
from bench.profiles import PROFILES, Profile
from bench.stack import CasewireStack, database_url
from shared.logging import configure_logging
from shared.settings import Settings

RESULTS = Path(__file__).parent / "results"
# The rate of the side-by-side CPU comparison with the floor, as a share of the bare broker's
# messages a second: the same load relative to the host on every host.
FLOOR_SHARE = 0.02


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr,
              flush=True)


async def measure_limits(http: limits.HttpLimits, settings: Settings, run_id: str,
                         profile: Profile, say: Progress) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ceiling, _ = await http.saturate("raw", profile.ceiling_seconds)
    out["loadgen_ceiling"] = limits.http_summary(ceiling)
    say(f"load generator ceiling (raw server): {ceiling.ok_per_second:,.0f} req/s")
    bare, peak_kib = await http.saturate("aiohttp", profile.http_seconds)
    out["aiohttp"] = {**limits.http_summary(bare), "peak_rss_mib": peak_kib / 1024}
    say(f"bare aiohttp (uvloop): {bare.ok_per_second:,.0f} req/s")
    if profile.http_asyncio:
        plain, _ = await http.saturate("aiohttp-asyncio", profile.http_seconds)
        out["aiohttp_asyncio"] = limits.http_summary(plain)
        say(f"bare aiohttp (asyncio loop): {plain.ok_per_second:,.0f} req/s")
    out["broker"] = await limits.broker_limit(settings.amqp_url, f"casewire-bench-{run_id}-limit",
                                              profile)
    best = out["broker"]["best"]
    say(f"bare broker: {best['rate']:,.0f} msg/s at {best['concurrency']} in flight")
    out["database"] = await limits.database_limit(
        database_url(settings.database_url, f"casewire_bench_{run_id}_limits"), profile)
    best = out["database"]["best"]
    say(f"bare database: {best['rate']:,.0f} rows/s ({best['method']}, "
        f"{best['connections']} conn, batch {best['batch']})")
    return out


async def measure_casewire(children: Children, gen: LoadGenerator, settings: Settings,
                           run_id: str, profile: Profile, profiler: Profiler | None,
                           say: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
    receiver_port = free_port()
    receiver = children.start("receiver", ["-m", "bench.receiver", str(receiver_port)])
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    await wait_http(receiver, f"{receiver_url}/stats")
    stack = CasewireStack(run_id, settings.amqp_url,
                          database_url(settings.database_url, f"casewire_bench_{run_id}"),
                          children, ingest_workers=profile.ingest_workers)
    try:
        await stack.start()
        ports = stack.ports
        say(f"Casewire started: ingest :{ports['ingest']} (x{profile.ingest_workers}), "
            f"casestore :{ports['casestore']}, dispatcher :{ports['dispatcher']}")
        forms = await stack.create_forms(f"{receiver_url}/deliver")
        db = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=3)
        monitor = Monitor(db, receiver_url, [forms.plain, forms.delivery], stack.pids())
        sampling = asyncio.create_task(monitor.run())
        try:
            bench = CasewireBench(stack, gen, forms, monitor, profile, receiver_url,
                                  gen.pids, {"receiver": [receiver.pid]}, say, profiler)
            outcome = await bench.run()
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
            await db.close()
    finally:
        await stack.stop()
        children.stop(receiver)
    figures = outcome.figures
    plot = {"timelines": outcome.timelines,
            "e2e_latencies": figures["delivery_latency"].pop("latencies"),
            "ingest_latencies": figures.pop("_ingest_latencies")}
    return {"casewire": figures, "phases": [asdict(p) for p in outcome.phases],
            "checks": outcome.checks}, plot


async def run(profile: Profile, out_dir: Path, profile_services: bool
              ) -> tuple[dict[str, Any], dict[str, Any], Profiler | None]:
    """Every measurement, in order: the results, the plot's data, and the profiler if any."""
    say = Progress()
    configure_logging("bench", "WARNING", json=False)
    run_id = uuid.uuid4().hex[:8]
    settings = Settings()
    children = Children(out_dir / "logs")
    gen = LoadGenerator(profile.workers)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    profiler = Profiler(out_dir / "profiles") if profile_services else None
    try:
        info = await machine.describe(settings.amqp_url, settings.database_url)
        say(f"machine: {machine.summary(info)}")
        gen.start()
        http = limits.HttpLimits(children, gen, profile)
        say(f"pinning for the limits: {http.pinning.describe()}")
        limit_figures = await measure_limits(http, settings, run_id, profile, say)
        measured, plot = await measure_casewire(children, gen, settings, run_id, profile,
                                                profiler, say)
        rate = measured["casewire"]["ingest_latency"]["target_rate"]
        bare = await http.latency_at(rate, profile.latency_seconds)
        limit_figures["aiohttp_latency"] = {**limits.http_summary(bare), "target_rate": rate}
        plot["bare_latencies"] = bare.latencies
        say(f"bare aiohttp at {rate:,.0f}/s: p99 "
            f"{limit_figures['aiohttp_latency']['latency_ms'].get('p99', 0):.1f} ms")
        # The floor at the same share of every host's capacity (200/s where the bare broker
        # takes 10,000 msg/s), side by side with Casewire on fresh stacks.
        floor_rate = round(limit_figures["broker"]["best"]["rate"] * FLOOR_SHARE)
        say(f"the floor beside Casewire at {floor_rate}/s ({profile.floor_rounds} round(s))")
        measured["floor"] = await floor.cost_side_by_side(
            children, settings, gen, floor_rate, profile.floor_cases, profile.floor_rounds)
        say(f"CPU per delivered case at {floor_rate}/s: floor "
            f"{measured['floor']['floor_ms']:.2f} ms, Casewire "
            f"{measured['floor']['casewire_ms']:.2f} ms, "
            f"ratio {measured['floor']['ratio']:.2f}")
    finally:
        if profiler is not None:
            profiler.stop()
        gen.stop()
        children.stop_all()

    failures, warnings, lines = checks.evaluate(measured["checks"], measured["casewire"],
                                                limit_figures)
    results: dict[str, Any] = {
        "profile": profile.name, "started_at": started_at,
        "duration_seconds": time.monotonic() - say.started,
        "machine": info, "machine_summary": machine.summary(info),
        "pinning": (f"limits: {http.pinning.describe()}; Casewire runs unpinned, "
                    "the OS spreads services, broker and database over all cores"),
        "loadgen": {"workers": profile.workers, "connections": profile.connections,
                    "open_loop_connections": profile.open_loop_connections,
                    "ceiling": limit_figures.pop("loadgen_ceiling")},
        "limits": limit_figures, **measured,
        "failures": failures, "warnings": warnings, "check_lines": lines,
        "settings": asdict(profile),
    }
    if profiler is not None:
        results["profiles"] = profiler.summaries()
    return results, plot, profiler


def write_outputs(results: dict[str, Any], plot: dict[str, Any], profiler: Profiler | None,
                  out_dir: Path) -> int:
    """The table on stdout and in latest.txt, latest.json, latest.png and the SVG charts;
    the exit status."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = report.table(results)
    (out_dir / "latest.txt").write_text(text + "\n")
    report.write_json(results, out_dir / "latest.json")
    report.write_plot(results, plot, out_dir / "latest.png")
    charts = report.write_charts(results, plot, out_dir)
    print(text)
    if profiler is not None:
        print("\n" + profiler.text())
    written = [out_dir / "latest.txt", out_dir / "latest.json", out_dir / "latest.png", *charts]
    print("\nWritten: " + ", ".join(str(p) for p in written))
    return 1 if results["failures"] else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short run (under 2 minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--workers", type=int, help="load generator processes")
    parser.add_argument("--ingest-workers", type=int,
                        help="ingest processes sharing its port (default 1)")
    parser.add_argument("--soak", type=float, help="soak seconds (default 100, quick 6)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the services with py-spy during the bursts (the figures "
                             "of such a run are lower than without)")
    args = parser.parse_args()
    profile = PROFILES["quick" if args.quick else "default"]
    if args.workers:
        profile = replace(profile, workers=args.workers)
    if args.ingest_workers:
        profile = replace(profile, ingest_workers=args.ingest_workers)
    if args.soak:
        profile = replace(profile, soak_seconds=args.soak)

    import uvloop

    async def guarded() -> tuple[dict[str, Any], dict[str, Any], Profiler | None]:
        task = asyncio.current_task()
        assert task is not None

        def stop() -> None:
            # The first signal cancels the run; more would cut its clean-up short.
            if task.cancelling():
                print("still cleaning up...", file=sys.stderr, flush=True)
            else:
                task.cancel()

        # Installed on the loop, so it works even where the shell started us ignoring SIGINT.
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop)
        return await run(profile, args.out, args.profile)

    try:
        # Ctrl-C cancels the run; every `finally` on the way stops and removes what it started.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            results, plot, profiler = runner.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted; everything the benchmark started was stopped and removed",
              file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        traceback.print_exc()
        print(f"\nbenchmark could not run: {exc!r} (service logs: {args.out / 'logs'})",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(write_outputs(results, plot, profiler, args.out))


if __name__ == "__main__":
    main()
