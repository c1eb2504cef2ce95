"""One table (each figure, its limit, Casewire / limit), the same as JSON, a PNG and SVG charts."""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.stats import bucket_rates, rate_series, rounded


@dataclass(frozen=True)
class Row:
    figure: str
    casewire: float | None
    limit: float | None
    unit: str
    limit_is: str

    @property
    def ratio(self) -> float | None:
        if self.casewire is None or not self.limit:
            return None
        return self.casewire / self.limit


def _best_pipeline_limit(limits: dict[str, Any]) -> tuple[float, str]:
    """The slowest of the bare parts a case passes: HTTP, broker, database."""
    parts = {"bare aiohttp": limits["aiohttp"]["rate"],
             "bare broker": limits["broker"]["best"]["rate"],
             "bare database": limits["database"]["best"]["rate"]}
    name = min(parts, key=lambda k: parts[k])
    return parts[name], name


def rows(results: dict[str, Any]) -> list[Row]:
    limits, cw = results["limits"], results["casewire"]
    http, brk, db = limits["aiohttp"], limits["broker"], limits["database"]
    out: list[Row] = []
    ingest_limit = min(http["rate"], brk["best"]["rate"])
    ingest_by = "bare aiohttp" if http["rate"] <= brk["best"]["rate"] else \
        f"bare broker ({brk['best']['concurrency']} in flight)"
    out.append(Row("ingest: accepted webhooks/s (saturation)", cw["ingest"]["rate"],
                   ingest_limit, "req/s", ingest_by))
    if "ingest_alone" in cw:
        out.append(Row("ingest alone (consumers paused)", cw["ingest_alone"]["rate"],
                       ingest_limit, "req/s", ingest_by))
    bare_lat = limits.get("aiohttp_latency", {}).get("latency_ms", {})
    rate = cw["ingest_latency"]["target_rate"]
    for p in ("p50", "p95", "p99"):
        out.append(Row(f"ingest latency {p} at {rate:,.0f}/s (50%)",
                       cw["ingest_latency"]["latency_ms"].get(p), bare_lat.get(p), "ms",
                       f"bare aiohttp at {rate:,.0f}/s"))
    pipeline, pipeline_by = _best_pipeline_limit(limits)
    out.append(Row("end to end to storage: cases/s", cw["storage"]["rate"], pipeline,
                   "cases/s", f"{pipeline_by} ({_method(db['best'])})"
                   if pipeline_by == "bare database" else pipeline_by))
    out.append(Row("end to end to delivery: cases/s", cw["delivery_burst"]["rate"], pipeline,
                   "cases/s", pipeline_by))
    floor = _latency_floor(limits)
    moderate = cw["delivery_latency"]["target_rate"]
    for p in ("p50", "p95", "p99"):
        out.append(Row(f"POST to arrival {p} at {moderate:,.0f}/s",
                       cw["delivery_latency"]["latency_ms"].get(p), floor.get(p), "ms",
                       "sum of bare hops: 2 HTTP + 2 publish + 1 commit"))
    out += _cpu_per_case_rows(results["phases"])
    if "floor" in results:
        f = results["floor"]
        out.append(Row(f"CPU per delivered case at {f['rate']:,.0f}/s, beside the floor",
                       f["casewire_ms"], f["floor_ms"], "ms",
                       f"the floor (bench/floor.py), {f['rounds']} round(s) of "
                       f"{f['cases']:,} (goal: <= 1.25)"))
    out += _isolation_rows(cw.get("isolation"))
    out += _distant_rows(cw.get("distant"))
    out += _timer_rows(cw.get("timers"))
    bare_rss = limits["aiohttp"].get("peak_rss_mib")
    for name, mem in cw["memory"].items():
        out.append(Row(f"peak RSS {name}", mem["peak_mib"], bare_rss, "MiB",
                       "bare aiohttp server process"))
    for name, mem in cw["memory"].items():
        verdict = "flat" if mem["flat"] else "GROWING"
        out.append(Row(f"RSS growth over soak {name} ({verdict})", mem["soak_growth_mib"],
                       None, "MiB", f"{mem['soak_slope_mib_per_min']:+.2f} MiB/min"))
    return out


# What a delivered case costs: the processes it passes through (not the load generator or the
# receiver, which stand for the outside world).
PIPELINE = ("ingest", "casestore", "dispatcher", "rabbitmq", "postgres")


def cpu_ms_per_case(phases: list[dict[str, Any]]) -> float | None:
    """CPU milliseconds of PIPELINE per case delivered over these phases together."""
    delivered = sum(p.get("delivered", 0) for p in phases)
    if not delivered:
        return None
    busy = sum(sum(p["cpu"].get(g, 0.0) for g in PIPELINE) * (p["ended"] - p["started"])
               for p in phases)
    return busy * 1000 / delivered


def _cpu_per_case_rows(phases: list[dict[str, Any]]) -> list[Row]:
    """At a moderate rate (the soak) and at saturation (a delivery backlog, until drained)."""
    by_name = {p["name"]: p for p in phases}
    spans = (("soak", ("soak", "soak drain")),
             ("saturation", ("delivery burst", "delivery drain")))
    return [Row(f"CPU per delivered case ({label})",
                cpu_ms_per_case([by_name[n] for n in names if n in by_name]), None, "ms",
                "ingest + casestore + dispatcher + RabbitMQ + Postgres")
            for label, names in spans]


def _isolation_rows(iso: dict[str, Any] | None) -> list[Row]:
    """The healthy endpoint beside a hanging one, against itself alone at the same rate."""
    if not iso:
        return []
    alone, beside, rate = iso["alone"], iso["beside_hanging"], iso["rate"]
    out = [Row(f"isolation: healthy endpoint at {rate:,.0f}/s beside a hanging one",
               beside["rate"], alone["rate"], "cases/s", "the same alone (goal: >= 0.90)")]
    for p, goal in (("p50", ""), ("p99", " (goal: <= 2)")):
        out.append(Row(f"isolation: its POST to arrival {p}", beside["latency_ms"].get(p),
                       alone["latency_ms"].get(p), "ms", f"the same alone{goal}"))
    return out


def _distant_rows(d: dict[str, Any] | None) -> list[Row]:
    """Each distant receiver's deliveries/s against what it could take; the outage."""
    if not d:
        return []
    out = []
    for bucket, r in d["receivers"].items():
        could = min(r["capacity"], d["rate"])
        out.append(Row(f"{bucket}: {r['delivered']:,} of {r['accepted']:,} in "
                       f"{r['seconds'] or 0:.1f} s, deliveries/s (most at once {r['peak']})",
                       r["per_second"], could, "deliveries/s",
                       f"it takes {r['most']} at once in {r['ms']} ms; posted "
                       f"{d['rate']:,.0f}/s"))
    outage = d.get("outage")
    if outage:
        share = next(v for k, v in outage.items() if k.startswith("within_"))
        out.append(Row(f"outage {outage['outage_seconds']:.0f} s: arrived within 150 s of the "
                       "first POST", share * 100, 95.0, "%", "goal"))
        out.append(Row("outage: seconds from the first POST until 95% arrived",
                       outage["seconds_to_95_percent"], 150.0, "s", "goal"))
    return out


def _timer_rows(t: dict[str, Any] | None) -> list[Row]:
    """Claiming stays flat as the table grows; a burst of due timers fires at (goal) 2,000/s."""
    if not t:
        return []
    return [
        Row(f"timers: claim with {t['pending']:,} pending", t["claim_ms_large"],
            t["claim_ms_small"], "ms", f"the same with {t['small']:,} pending (flat: ~1)"),
        Row(f"timers: {t['burst']:,} falling due at once, fired/s", t["rate"], 2000.0,
            "firings/s", "goal (to the dispatcher)"),
        *(Row(f"timers: lateness {p} in that burst", t["late_by_ms"].get(p), None, "ms",
              "after the moment they fell due") for p in ("p50", "p99")),
    ]


def _method(run: dict[str, Any]) -> str:
    batch = f", {run['batch']}-row batches" if run["batch"] > 1 else ""
    return f"{run['method']}, {run['connections']} conn{batch}"


def _latency_floor(limits: dict[str, Any]) -> dict[str, float]:
    """POST to arrival crosses 2 HTTP requests, 2 confirmed publishes and 1 commit."""
    http = limits.get("aiohttp_latency", {}).get("latency_ms", {})
    publish = (limits["broker"].get("one_at_a_time") or {}).get("latency_ms", {})
    commit = (limits["database"].get("one_commit") or {}).get("latency_ms", {})
    floor = {}
    for p in ("p50", "p95", "p99"):
        if p in http and p in publish and p in commit:
            floor[p] = 2 * http[p] + 2 * publish[p] + commit[p]
    return floor


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit in ("ms", "MiB"):
        if abs(value) < 10:
            return f"{value:,.2f} {unit}"
        return f"{value:,.1f} {unit}" if abs(value) < 100 else f"{value:,.0f} {unit}"
    return f"{value:,.0f} {unit}"


def table(results: dict[str, Any]) -> str:
    lines = [f"Casewire benchmark ({results['profile']} profile), "
             f"{results['started_at']}, {results['duration_seconds']:.0f} s",
             f"Machine: {results['machine_summary']}",
             f"Load generator: {results['loadgen']['workers']} process(es) x "
             f"{results['loadgen']['connections']} connections; ceiling "
             f"{results['loadgen']['ceiling']['rate']:,.0f} req/s against a raw asyncio "
             f"server ({results['pinning']})", ""]
    body = [("Figure", "Casewire", "Limit", "Casewire/limit", "Limit is")]
    for row in rows(results):
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        body.append((row.figure, _fmt(row.casewire, row.unit), _fmt(row.limit, row.unit),
                     ratio, row.limit_is))
    lines += _aligned(body)
    lines += ["", "Limits measured on this machine:"]
    lines += [f"  {k}: {v}" for k, v in limit_lines(results["limits"])]
    lines += ["", "CPU per phase (1.00 = one core busy):"]
    lines += _cpu_lines(results["phases"])
    lines += ["", "Postgres backends of Casewire by state, mean per phase (top 4):"]
    lines += _wait_lines(results["phases"])
    lines += ["", "Checks:"] + [f"  {line}" for line in results["check_lines"]]
    verdict = "FAIL" if results["failures"] else "PASS"
    lines += ["", f"Result: {verdict}" + (": " + "; ".join(results["failures"])
                                          if results["failures"] else "")]
    for warning in results["warnings"]:
        lines.append(f"Warning: {warning}")
    return "\n".join(lines)


def limit_lines(limits: dict[str, Any]) -> list[tuple[str, str]]:
    http, brk, db = limits["aiohttp"], limits["broker"], limits["database"]
    out = [("bare aiohttp (uvloop, as the services)",
            f"{http['rate']:,.0f} req/s, peak RSS {http['peak_rss_mib']:.0f} MiB")]
    if "aiohttp_asyncio" in limits:
        out.append(("bare aiohttp (default asyncio loop)",
                    f"{limits['aiohttp_asyncio']['rate']:,.0f} req/s"))
    runs = ", ".join(f"{r['concurrency']}: {r['rate']:,.0f}" for r in brk["runs"])
    out.append((f"bare broker, msg/s by publishes in flight ({brk['message_bytes']} B)", runs))
    for r in db["runs"]:
        out.append((f"bare database, {_method(r)}", f"{r['rate']:,.0f} rows/s"))
    return out


def _cpu_lines(phases: list[dict[str, Any]]) -> list[str]:
    groups = ["ingest", "casestore", "dispatcher", "rabbitmq", "postgres", "loadgen",
              "receiver", "machine"]
    body = [("phase", "s", *groups, "ms/delivered")]
    for phase in phases:
        cpu = phase["cpu"]
        per_case = cpu_ms_per_case([phase])
        body.append((phase["name"], f"{phase['ended'] - phase['started']:.1f}",
                     *(f"{cpu.get(g, 0.0):.2f}" for g in groups),
                     "-" if per_case is None else f"{per_case:.2f}"))
    return ["  " + line for line in _aligned(body)]


def _wait_lines(phases: list[dict[str, Any]]) -> list[str]:
    out = []
    for phase in phases:
        waits = sorted(phase.get("pg_waits", {}).items(), key=lambda kv: -kv[1])[:4]
        if waits:
            out.append(f"  {phase['name']:<18} " + ", ".join(f"{k} {v:.1f}" for k, v in waits))
    return out


def _aligned(body: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in body) for i in range(len(body[0]))]
    out = []
    for n, r in enumerate(body):
        out.append("  ".join(c.ljust(w) if i in (0, len(r) - 1) else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def write_json(results: dict[str, Any], path: Path) -> None:
    table_rows = [{**asdict(r), "ratio": r.ratio} for r in rows(results)]
    path.write_bytes(orjson.dumps(rounded({**results, "table": table_rows}),
                                  option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def write_plot(results: dict[str, Any], plot: dict[str, Any], path: Path) -> None:
    """Latency distributions, throughput over time and RSS over time, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    (lat_ax, e2e_ax), (tput_ax, rss_ax) = axes
    _latency_panels(lat_ax, e2e_ax, results, plot)
    timelines = plot["timelines"]
    origin = timelines["origin"]
    for i, entry in enumerate(timelines["accepted_buckets"]):
        series = bucket_rates(entry["buckets"], 0.1, per=0.5)
        tput_ax.plot([entry["start"] - origin + t for t, _ in series], [r for _, r in series],
                     color="tab:blue", label="accepted by ingest" if i == 0 else None)
    counts = timelines["counts"]
    stored = rate_series([(t, s) for t, s, _ in counts][::10])
    tput_ax.plot([t - origin for t, _ in stored], [r for _, r in stored], color="tab:green",
                 label="stored in Postgres")
    arrived = sorted(timelines["arrived"])
    if arrived:
        per_half = _histogram([a - origin for a in arrived], 0.5)
        tput_ax.plot([t for t, _ in per_half], [c / 0.5 for _, c in per_half],
                     color="tab:red", label="delivered to the receiver")
    tput_ax.set(title="Throughput over time", xlabel="seconds since Casewire started",
                ylabel="per second")
    tput_ax.legend()
    for name, samples in timelines["rss"].items():
        rss_ax.plot([t - origin for t, _ in samples], [k / 1024 for _, k in samples],
                    label=name)
    soak = results["casewire"]["soak"]
    rss_ax.axvspan(soak["started"] - origin, soak["ended"] - origin, color="0.9",
                   label="soak")
    rss_ax.set(title="RSS per service", xlabel="seconds since Casewire started",
               ylabel="MiB")
    rss_ax.legend()
    fig.suptitle(f"Casewire benchmark, {results['machine_summary'][:110]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# The SVG charts `make bench` writes beside latest.png (docs/performance.md shows copies).
CHARTS = ("latency.svg", "throughput.svg", "cpu-per-case.svg")
# Process groups in the order the CPU chart stacks them; the floor's roles take their places.
CPU_PARTS = (("ingest", ("ingest",)), ("casestore / store", ("casestore", "store")),
             ("dispatcher / dispatch", ("dispatcher", "dispatch")),
             ("RabbitMQ", ("rabbitmq",)), ("Postgres", ("postgres",)))
THROUGHPUT_UNITS = ("req/s", "cases/s", "deliveries/s", "firings/s")


def write_charts(results: dict[str, Any], plot: dict[str, Any], out_dir: Path) -> list[Path]:
    """latency.svg (distributions), throughput.svg (each phase against its limit) and
    cpu-per-case.svg (what a delivered case costs, per process, against the floor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Text stays text in the SVG (smaller, searchable); no timestamp, so reruns diff cleanly.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "casewire"}):
        written = []
        for name, draw in zip(CHARTS, (_latency_chart, _throughput_chart, _cpu_chart),
                              strict=True):
            fig = draw(plt, results, plot)
            path = out_dir / name
            fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
            plt.close(fig)
            written.append(path)
    return written


def _caption(results: dict[str, Any]) -> str:
    return (f"make bench ({results['profile']} profile), {results['started_at']}, "
            f"{results['machine_summary'][:90]}")


def _latency_chart(plt: Any, results: dict[str, Any], plot: dict[str, Any]) -> Any:
    fig, (lat_ax, e2e_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    _latency_panels(lat_ax, e2e_ax, results, plot)
    fig.text(0.01, 0.005, _caption(results), fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def _throughput_chart(plt: Any, results: dict[str, Any], plot: dict[str, Any]) -> Any:
    """Each throughput figure of the table beside its limit (log scale: limits are 10x)."""
    picked = [r for r in rows(results) if r.unit in THROUGHPUT_UNITS and r.casewire]
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(picked) + 1.6), layout="constrained")
    ys = list(range(len(picked)))[::-1]
    ax.barh([y + 0.2 for y in ys], [r.limit or 0 for r in picked], height=0.4,
            color="0.8", label="limit")
    ax.barh([y - 0.2 for y in ys], [r.casewire or 0 for r in picked], height=0.4,
            color="tab:blue", label="Casewire")
    for y, r in zip(ys, picked, strict=True):
        ratio = f" ({r.ratio:.2f} of the limit)" if r.ratio is not None else ""
        ax.text((r.casewire or 0) * 1.05, y - 0.2, f"{r.casewire:,.0f}{ratio}",
                va="center", fontsize=8)
    ax.set_yticks(ys, [_short(r.figure) for r in picked], fontsize=9)
    ax.set_xscale("log")
    fig.suptitle("Throughput per phase, against its limit")
    ax.set_title(_caption(results), fontsize=7, color="0.4", loc="left")
    ax.set(xlabel="per second (log scale): requests, cases, deliveries or timer firings")
    fig.legend(loc="outside lower center", fontsize=8, ncols=2)
    return fig


def _short(figure: str) -> str:
    return figure if len(figure) <= 60 else figure[:57] + "..."


def _cpu_chart(plt: Any, results: dict[str, Any], plot: dict[str, Any]) -> Any:
    """CPU ms per delivered case, stacked by process: the floor, Casewire beside it, and
    Casewire in the soak and at saturation."""
    bars: list[tuple[str, dict[str, float]]] = []
    floor = results.get("floor")
    if floor and "floor_parts" in floor:
        bars.append((f"the floor at {floor['rate']:,.0f}/s", floor["floor_parts"]))
        bars.append((f"Casewire at {floor['rate']:,.0f}/s, beside it",
                     floor["casewire_parts"]))
    by_name = {p["name"]: p for p in results["phases"]}
    soak_rate = results["casewire"]["delivery_latency"]["target_rate"]
    for label, names in ((f"Casewire, soak at {soak_rate:,.0f}/s", ("soak", "soak drain")),
                         ("Casewire, saturation", ("delivery burst", "delivery drain"))):
        parts = _cpu_parts([by_name[n] for n in names if n in by_name])
        if parts:
            bars.append((label, parts))
    fig, ax = plt.subplots(figsize=(11, 0.6 * len(bars) + 1.8), layout="constrained")
    ys = list(range(len(bars)))[::-1]
    left = [0.0] * len(bars)
    for part, names in CPU_PARTS:
        widths = [sum(parts.get(n, 0.0) for n in names) for _, parts in bars]
        ax.barh(ys, widths, left=left, height=0.6, label=part)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for y, total in zip(ys, left, strict=True):
        ax.text(total * 1.01, y, f"{total:.2f} ms", va="center", fontsize=8)
    ax.set_yticks(ys, [label for label, _ in bars], fontsize=9)
    fig.suptitle("CPU per delivered case, by process")
    ax.set_title(_caption(results), fontsize=7, color="0.4", loc="left")
    ax.set(xlabel="CPU ms per delivered case")
    ax.set_xlim(0, max(left, default=1) * 1.15)
    fig.legend(loc="outside lower center", fontsize=8, ncols=5)
    return fig


def _cpu_parts(phases: list[dict[str, Any]]) -> dict[str, float]:
    """CPU ms per delivered case of each PIPELINE process over these phases together."""
    delivered = sum(p.get("delivered", 0) for p in phases)
    if not delivered:
        return {}
    return {g: sum(p["cpu"].get(g, 0.0) * (p["ended"] - p["started"]) for p in phases)
            * 1000 / delivered for g in PIPELINE}


def _latency_panels(lat_ax: Any, e2e_ax: Any, results: dict[str, Any],
                    plot: dict[str, Any]) -> None:
    """Ingest's latency beside bare aiohttp's, and POST to arrival: the PNG's and the SVG's."""
    _latency_cdf(lat_ax, {
        f"ingest at {results['casewire']['ingest_latency']['target_rate']:,.0f}/s":
            plot["ingest_latencies"],
        "bare aiohttp, same rate": plot["bare_latencies"]},
        "Ingest: request latency (CDF)")
    _latency_cdf(e2e_ax, {"POST to arrival at the receiver": plot["e2e_latencies"]},
                 f"End to end at {results['casewire']['delivery_latency']['target_rate']:,.0f}"
                 "/s (CDF)")


def _latency_cdf(ax: Any, series: dict[str, list[float]], title: str) -> None:
    for label, values in series.items():
        if not values:
            continue
        ordered = sorted(v * 1000 for v in values)
        n = len(ordered)
        ax.plot(ordered, [(i + 1) / n for i in range(n)], label=f"{label} (n={n:,})")
    ax.set_xscale("log")
    ax.set(title=title, xlabel="ms (log scale)", ylabel="fraction of requests")
    for q in (0.5, 0.95, 0.99):
        ax.axhline(q, color="0.8", linewidth=0.8)
    ax.legend()


def _histogram(times: list[float], width: float) -> list[tuple[float, int]]:
    if not times:
        return []
    start = min(times)
    counts: dict[int, int] = {}
    for t in times:
        k = int((t - start) / width)
        counts[k] = counts.get(k, 0) + 1
    last = max(counts)
    return [(start + (k + 1) * width, counts.get(k, 0)) for k in range(last + 1)]
