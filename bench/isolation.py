"""Isolation: an endpoint that never answers must not slow down another one.

Two phases with the same load, R cases a second (open loop), every other request to a form
whose automation's endpoint answers at once (the receiver's bucket `isolation`), so it gets
R/2; the rest goes to a second form:
1. `isolation baseline`: whose endpoint answers at once too (bucket `isolation-partner`);
2. `isolation, hanging`: whose endpoint never answers (timeout 60 s, 3 attempts). Its first
   attempts fill the endpoint's slots (CASEWIRE_ENDPOINT_CONCURRENCY) and hang; every later
   delivery of it waits in casestore's schedule.
Only the partner's behaviour differs, so what the healthy endpoint loses is what the hanging
one costs it, not a heavier load. For each phase: the healthy endpoint's throughput (its cases
over the time from the phase's first POST to its last arrival; R/2 if nothing holds it up) and
its POST-to-arrival latency. The ratios put phase 2 over phase 1; the goal is a throughput of
at least 0.9 of the baseline's and a p99 within 2x.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

import aiohttp

from bench import workload
from bench.loadgen import Job, LoadResult, path_index
from bench.stats import percentiles

if TYPE_CHECKING:
    from bench.casewire import CasewireBench

HEALTHY, PARTNER, HANGING = "bench-iso-healthy", "bench-iso-partner", "bench-iso-hanging"
MIXED = "bench-iso-mixed"  # the load of a phase, both forms
BUCKET = "isolation"
WARM_UP_RATE = 20.0


async def measure(bench: CasewireBench, rate: float, seconds: float) -> dict[str, Any]:
    """Both phases at `rate` cases a second (half of them the healthy form's) for `seconds`
    each; the figures."""
    healthy = await bench.stack.create_form(HEALTHY, workload.automation(
        f"{bench.receiver_url}/deliver/{BUCKET}", name="bench healthy endpoint"))
    partner = await bench.stack.create_form(PARTNER, workload.automation(
        f"{bench.receiver_url}/deliver/{BUCKET}-partner", name="bench partner endpoint"))
    hanging = await bench.stack.create_form(HANGING, workload.automation(
        f"{bench.receiver_url}/hang", timeout=60, name="bench hanging endpoint"))
    # Not measured: the rules cache and connections to the new endpoint are warm after this.
    await _run(bench, "isolation warm-up", _job(bench, (healthy, partner), WARM_UP_RATE, 0.5))
    alone = await _run(bench, "isolation baseline", _job(bench, (healthy, partner), rate, seconds))
    beside = await _run(bench, "isolation, hanging", _job(bench, (healthy, hanging), rate, seconds))
    arrivals = await _arrivals(bench)
    figures: dict[str, Any] = {
        "rate": rate / 2, "seconds": seconds,
        "alone": _figures(alone, arrivals), "beside_hanging": _figures(beside, arrivals),
        "hanging_endpoint": await _hanging(bench)}
    a, b = figures["alone"], figures["beside_hanging"]
    figures["throughput_ratio"] = _ratio(b["rate"], a["rate"])
    for p in ("p50", "p99"):
        figures[f"{p}_ratio"] = _ratio(b["latency_ms"].get(p), a["latency_ms"].get(p))
    return figures


def _job(bench: CasewireBench, paths: tuple[str, ...], rate: float, seconds: float) -> Job:
    """Open loop over `paths` in turn (the healthy form's first)."""
    return Job(port=bench.stack.ports["ingest"], path=paths[0], paths=paths,
               body=workload.BODY_TEMPLATE, connections=bench.profile.open_loop_connections,
               duration=seconds, rate=rate, id_base=bench.next_id_base(), drain_timeout=30.0)


def _healthy(result: LoadResult) -> list[int]:
    return [i for i in result.accepted_ids if path_index(result.job, i) == 0]


async def _run(bench: CasewireBench, phase: str, job: Job) -> LoadResult:
    """The load, then until every healthy case of it arrived."""
    await bench.settle()
    result = await bench.load(phase, MIXED if len(job.paths) > 1 else HEALTHY, job)
    accepted = bench.accepted.setdefault(HEALTHY, array("q"))
    if len(job.paths) > 1:
        accepted.extend(_healthy(result))

    def arrived() -> int:
        return bench.monitor.buckets.get(BUCKET, 0)

    await bench.drain(f"{phase} drain", arrived, len(accepted))
    return result


def _figures(result: LoadResult, arrivals: dict[str, list[Any]]) -> dict[str, Any]:
    healthy = set(_healthy(result))
    mine = [k for k, request_id in enumerate(arrivals["ids"]) if request_id in healthy]
    delivered = len({arrivals["ids"][k] for k in mine})
    last = max((arrivals["arrived"][k] for k in mine), default=result.first_send)
    return {"cases": len(healthy), "delivered": delivered,
            "rate": delivered / max(last - result.first_send, 1e-9),
            "latency_ms": percentiles([arrivals["arrived"][k] - arrivals["sent"][k]
                                       for k in mine])}


async def _arrivals(bench: CasewireBench) -> dict[str, list[Any]]:
    async with aiohttp.ClientSession() as http, http.get(
            f"{bench.receiver_url}/dump", params={"bucket": BUCKET}) as resp:
        dump: dict[str, list[Any]] = await resp.json()
        return dump


async def _hanging(bench: CasewireBench) -> dict[str, Any]:
    """Requests the hanging endpoint holds open, and its deliveries by state."""
    async with aiohttp.ClientSession() as http, http.get(f"{bench.receiver_url}/stats") as r:
        held = int((await r.json())["hanging"])
    rows = await bench.monitor.db.fetch(
        "SELECT state, count(*) AS n FROM deliveries WHERE form_id = $1 GROUP BY state", HANGING)
    return {"held_open": held, "deliveries": {r["state"]: int(r["n"]) for r in rows}}


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


async def check(bench: CasewireBench) -> dict[str, int]:
    """Every accepted case of the healthy form arrived exactly once."""
    arrivals = await _arrivals(bench)
    accepted = set(bench.accepted.get(HEALTHY, ()))
    received: dict[int, int] = {}
    for request_id in arrivals["ids"]:
        received[request_id] = received.get(request_id, 0) + 1
    return {"cases": len(accepted), "received": sum(received.values()),
            "lost": len(accepted - set(received)),
            "duplicates": sum(c - 1 for c in received.values() if c > 1),
            "unexpected": len(set(received) - accepted)}
