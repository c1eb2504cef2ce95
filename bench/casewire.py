"""Casewire's figures, measured on a running stack with the same load generator as the limits.

1. ingest at saturation (closed loop, plain form), then until every case is stored:
   accepted webhooks per second, and end to end to storage;
2. ingest latency at 50% of the saturated rate (open loop); then saturation again with casestore
   and the dispatcher paused: ingest with the cores to itself and the broker;
3. a burst on the form with an outgoing webhook, until every delivery arrived: end to end to
   delivery;
4. a soak at a fixed moderate rate on that form: POST-to-arrival latency, RSS over time;
5. isolation (bench/isolation.py): a healthy endpoint alone, then beside one that hangs.
6. distant receivers (bench/distant.py): receivers answering after 50-200 ms or 429 above a
   concurrency, a burst each; and a 20 s outage;
7. timers (bench/timers.py): claiming from a table of many timers, and many falling due at once.

Every accepted request's id is kept, so `verify` can prove each is exactly one case, each
case of the delivery form exactly one delivery, and each of the healthy isolation form too.
"""

import asyncio
import contextlib
import itertools
import os
import signal
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from bench import distant, isolation, timers, workload
from bench.cpu import CpuMeter
from bench.loadgen import Job, LoadGenerator, LoadResult
from bench.procs import memory_kib
from bench.profiler import Profiler
from bench.profiles import Profile
from bench.stack import CasewireStack, Forms, queue_depths
from bench.stats import percentiles, slope

JOB_ID_SPAN = 10**10  # every load job gets its own id range


@dataclass
class Phase:
    name: str
    started: float
    ended: float
    cpu: dict[str, float]
    # Mean number of Casewire's Postgres backends in each state (what a commit waits on).
    pg_waits: dict[str, float] = field(default_factory=dict)
    delivered: int = 0  # requests the receiver got during the phase


PG_ACTIVITY = (
    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    " AND backend_type = 'client backend' AND state <> 'idle'")


def _wait_label(row: asyncpg.Record) -> str:
    if row["state"] == "idle in transaction":
        return "idle in transaction (waiting for the service)"
    if row["wait_event"] is None:
        return "running (CPU)"
    return f"{row['wait_event_type']}:{row['wait_event']}"


@dataclass
class Monitor:
    """Every 50 ms: cases stored per form and deliveries received; every 0.5 s: RSS."""

    db: asyncpg.Pool
    receiver_url: str
    forms: list[str]
    pids: dict[str, int]
    stored: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    buckets: dict[str, int] = field(default_factory=dict)  # deliveries to /deliver/<bucket>
    counts: list[tuple[float, dict[str, int], int]] = field(default_factory=list)
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    pg: list[tuple[float, Counter[str]]] = field(default_factory=list)

    def delivered_between(self, started: float, ended: float) -> int:
        at = [d for t, _, d in self.counts if started <= t <= ended]
        return at[-1] - at[0] if at else 0

    def pg_waits(self, started: float, ended: float) -> dict[str, float]:
        samples = [c for t, c in self.pg if started <= t <= ended]
        total: Counter[str] = Counter()
        for sample in samples:
            total.update(sample)
        return {k: v / len(samples) for k, v in total.most_common()} if samples else {}

    async def run(self) -> None:
        self.rss = {name: [] for name in self.pids}
        last_rss = 0.0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while True:
                now = time.monotonic()
                rows = await self.db.fetch(
                    "SELECT form_id, last_number FROM case_counters WHERE form_id = ANY($1)",
                    self.forms)
                self.stored = {r["form_id"]: int(r["last_number"]) for r in rows}
                activity = await self.db.fetch(PG_ACTIVITY)
                self.pg.append((now, Counter(_wait_label(r) for r in activity)))
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{self.receiver_url}/stats") as resp:
                        stats = await resp.json()
                        self.delivered, self.buckets = int(stats["count"]), stats["buckets"]
                self.counts.append((now, dict(self.stored), self.delivered))
                if now - last_rss >= 0.5:
                    last_rss = now
                    for name, pid in self.pids.items():
                        self.rss[name].append((now, memory_kib(pid)[0]))
                await asyncio.sleep(0.05)

    async def wait_for(self, value: Callable[[], int], target: int, within: float,
                       stall: float = 20.0) -> float | None:
        """Monotonic time `value()` first reached `target`; None on timeout or a stall."""
        deadline = time.monotonic() + within
        seen, moved = value(), time.monotonic()
        while time.monotonic() < deadline:
            current = value()
            if current >= target:
                return time.monotonic()
            if current != seen:
                seen, moved = current, time.monotonic()
            elif time.monotonic() - moved > stall:
                return None
            await asyncio.sleep(0.02)
        return None


@dataclass
class Outcome:
    """What one Casewire run measured; `report` turns it into the table."""

    figures: dict[str, Any] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    timelines: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)


class CasewireBench:
    def __init__(self, stack: CasewireStack, gen: LoadGenerator, forms: Forms,
                 monitor: Monitor, profile: Profile, receiver_url: str,
                 loadgen_pids: list[int], extra_pids: dict[str, list[int]],
                 say: Callable[[str], None], profiler: Profiler | None = None):
        self.say = say
        self.profiler = profiler
        self.stack = stack
        self.gen = gen
        self.forms = forms
        self.monitor = monitor
        self.profile = profile
        self.receiver_url = receiver_url
        self.jobs = itertools.count(1)
        self.accepted: dict[str, array[int]] = {forms.plain: array("q"),
                                                 forms.delivery: array("q")}
        self.answers: dict[str, Counter[str]] = {forms.plain: Counter(),
                                                  forms.delivery: Counter()}
        self.meter_pids = {**stack.pids_by_service(), "loadgen": loadgen_pids, **extra_pids}
        self.outcome = Outcome()
        self.started = time.monotonic()
        self.settled = 0.0

    def _job(self, form: str, *, duration: float, rate: float | None = None,
             max_requests: int | None = None, connections: int | None = None) -> Job:
        path = self.forms.plain_url if form == self.forms.plain else self.forms.delivery_url
        closed = rate is None
        return Job(port=self.stack.ports["ingest"], path=path, body=workload.BODY_TEMPLATE,
                   connections=connections or (self.profile.connections if closed
                                               else self.profile.open_loop_connections),
                   duration=duration, rate=rate, max_requests=max_requests,
                   id_base=self.next_id_base(), drain_timeout=30.0)

    def next_id_base(self) -> int:
        """Every load job gets its own range of request ids."""
        return next(self.jobs) * JOB_ID_SPAN

    async def load(self, phase: str, form: str, job: Job) -> LoadResult:
        meter = CpuMeter(self.meter_pids)
        meter.start()
        result = await self.gen.run(job)
        self._phase(phase, result.first_send, result.last_done, meter)
        self.accepted.setdefault(form, array("q")).extend(result.accepted_ids)
        answers = self.answers.setdefault(form, Counter())
        for status, count in result.statuses.items():
            answers[str(status)] += count
        for reason, count in result.errors.items():
            answers[reason] += count
        return result

    async def drain(self, phase: str, value: Callable[[], int], target: int,
                    within: float | None = None) -> float | None:
        meter = CpuMeter(self.meter_pids)
        meter.start()
        started = time.monotonic()
        # A drain given its own time waits it out: nothing may move for a while (a circuit open).
        reached = (await self.monitor.wait_for(value, target, within, stall=within) if within
                   else await self.monitor.wait_for(value, target, self.profile.drain_timeout))
        self._phase(phase, started, time.monotonic(), meter)
        return reached

    def _phase(self, name: str, started: float, ended: float, meter: CpuMeter) -> None:
        shares = meter.stop()
        if ended - started >= 0.3:  # shorter ones say nothing about CPU
            self.outcome.phases.append(Phase(
                name, started, ended, shares, self.monitor.pg_waits(started, ended),
                self.monitor.delivered_between(started, ended)))

    async def settle(self) -> None:
        """Before a measured phase: no message queued, no event waiting in the outbox."""
        deadline = time.monotonic() + self.profile.drain_timeout
        started = time.monotonic()
        while time.monotonic() < deadline:
            depths = await queue_depths(self.stack.amqp_url, self.stack.prefix)
            outbox = await self.monitor.db.fetchval("SELECT count(*) FROM outbox")
            if not any(depths.values()) and not outbox:
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(0.3)  # what consumers hold unacknowledged is not in the depths
        self.settled += time.monotonic() - started

    @contextlib.contextmanager
    def _paused(self, *services: str) -> Iterator[None]:
        pids = [self.stack.services[name].pid for name in services]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    def _stored(self, form: str) -> Callable[[], int]:
        return lambda: self.monitor.stored.get(form, 0)

    async def run(self) -> Outcome:
        p, forms, figures = self.profile, self.forms, self.outcome.figures
        for form in (forms.plain, forms.delivery):
            await self.load("warm-up", form, self._job(form, duration=p.warmup_seconds,
                                                        rate=100.0))
        await self.drain("warm-up drain", self._stored(forms.plain),
                          len(self.accepted[forms.plain]))
        await self.monitor.wait_for(lambda: self.monitor.delivered,
                                    len(self.accepted[forms.delivery]), p.drain_timeout)

        await self.settle()
        self._profile("saturation")
        saturated = await self.load("ingest saturation", forms.plain,
                                     self._job(forms.plain, duration=p.ingest_seconds))
        self.say(f"ingest saturation: {saturated.ok_per_second:,.0f} accepted/s "
                 f"({saturated.ok:,} in {saturated.window:.1f} s); waiting for storage")
        stored_at = await self.drain("storage drain", self._stored(forms.plain),
                                      len(self.accepted[forms.plain]))
        self._profile(None)
        figures["ingest"] = _load_summary(saturated)
        figures["storage"] = {
            "cases": saturated.ok, "complete": stored_at is not None,
            "rate": saturated.ok / (stored_at - saturated.first_send) if stored_at else 0.0,
            "seconds": (stored_at or time.monotonic()) - saturated.first_send}
        self.say(f"end to end to storage: {figures['storage']['rate']:,.0f} cases/s "
                 f"({figures['storage']['seconds']:.1f} s)")

        half = max(1.0, saturated.ok_per_second / 2)
        await self.settle()
        at_half = await self.load("ingest at 50%", forms.plain,
                                   self._job(forms.plain, duration=p.latency_seconds, rate=half))
        figures["ingest_latency"] = {**_load_summary(at_half), "target_rate": half}
        figures["_ingest_latencies"] = at_half.latencies
        lat = figures["ingest_latency"]["latency_ms"]
        self.say(f"ingest at {half:,.0f}/s: p50 {lat.get('p50', 0):.1f} ms, "
                 f"p99 {lat.get('p99', 0):.1f} ms")
        await self.drain("storage drain", self._stored(forms.plain),
                          len(self.accepted[forms.plain]))

        # The same saturation with the consumers paused (SIGSTOP): what ingest does with the
        # cores to itself and the broker, apart from the rest of the pipeline.
        await self.settle()
        with self._paused("casestore", "dispatcher"):
            alone = await self.load("ingest alone", forms.plain,
                                     self._job(forms.plain, duration=p.ingest_seconds))
        figures["ingest_alone"] = _load_summary(alone)
        self.say(f"ingest alone (casestore, dispatcher paused): {alone.ok_per_second:,.0f} "
                 "accepted/s; waiting for storage")
        await self.drain("storage drain", self._stored(forms.plain),
                          len(self.accepted[forms.plain]))

        await self.settle()
        self._profile("delivery")
        burst = await self.load("delivery burst", forms.delivery, self._job(
            forms.delivery, duration=p.drain_timeout, max_requests=p.delivery_burst))
        self.say(f"delivery burst: {burst.ok:,} accepted in {burst.window:.1f} s; "
                 "waiting for the deliveries")
        delivered_at = await self.drain("delivery drain", lambda: self.monitor.delivered,
                                         len(self.accepted[forms.delivery]))
        self._profile(None)
        figures["delivery_burst"] = {"ingest": _load_summary(burst), "cases": burst.ok,
                                     "complete": delivered_at is not None,
                                     "first_send": burst.first_send,
                                     "id_base": burst.job.id_base}

        moderate = p.moderate_rate
        arrivals = await self._arrivals()
        burst_rate = _burst_delivery_rate(arrivals, burst)
        figures["delivery_burst"]["rate"] = burst_rate
        if burst_rate:
            moderate = min(moderate, max(1.0, burst_rate / 2))
        await self.settle()
        self.say(f"end to end to delivery: {burst_rate:,.0f} cases/s; soak at {moderate:,.0f}/s "
                 f"for {p.soak_seconds:.0f} s")
        soak = await self.load("soak", forms.delivery,
                                self._job(forms.delivery, duration=p.soak_seconds, rate=moderate))
        await self.drain("soak drain", lambda: self.monitor.delivered,
                          len(self.accepted[forms.delivery]))
        figures["soak"] = {**_load_summary(soak), "target_rate": moderate,
                           "started": soak.first_send, "ended": soak.last_done,
                           "id_base": soak.job.id_base}
        arrivals = await self._arrivals()
        figures["delivery_latency"] = _e2e_latency(arrivals, soak)
        figures["delivery_latency"]["target_rate"] = moderate
        figures["memory"] = self._memory(soak)
        self.outcome.timelines = self._timelines((saturated, at_half, burst, soak), arrivals)
        lat = figures["delivery_latency"]["latency_ms"]
        self.say(f"POST to arrival at {moderate:,.0f}/s: p50 {lat.get('p50', 0):.1f} ms, "
                 f"p99 {lat.get('p99', 0):.1f} ms")

        # The soak's rate, half of it to a healthy endpoint, half to a partner that answers
        # at once, then to one that hangs.
        self.say(f"isolation: {moderate:,.0f} cases/s, half to a healthy endpoint, half to a "
                 "partner that answers, then to one that hangs")
        figures["isolation"] = await isolation.measure(self, moderate, p.isolation_seconds)
        iso = figures["isolation"]
        self.say(f"isolation: healthy throughput ratio {iso['throughput_ratio'] or 0:.2f}, "
                 f"p99 ratio {iso['p99_ratio'] or 0:.2f}")
        self.say(f"distant receivers: {p.distant_cases} cases at {p.distant_rate:,.0f}/s to "
                 "each" + (", then a 20 s outage" if p.distant_outage else ""))
        figures["distant"] = await distant.measure(self, p.distant_cases, p.distant_rate,
                                                   p.distant_outage)
        for bucket, got in figures["distant"]["receivers"].items():
            self.say(f"{bucket}: {got['per_second']:,.0f} deliveries/s, "
                     f"{got['ratio']:.2f} of what it could take, at most {got['peak']} at once")
        self._profile("timers")
        figures["timers"] = await timers.measure(self, p.timers_pending, p.timers_burst)
        self._profile(None)
        fired = figures["timers"]
        self.say(f"timers: {fired['fired']:,} of {fired['burst']:,} fired at "
                 f"{fired['rate'] or 0:,.0f}/s; checking")
        self.outcome.checks = await self.verify(arrivals)
        return self.outcome

    def _profile(self, label: str | None) -> None:
        if self.profiler is None:
            return
        if label is None:
            self.profiler.stop()
        else:
            self.profiler.start(label, self.stack.pids())

    async def _arrivals(self) -> dict[str, list[Any]]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.receiver_url}/dump") as r:
            dump: dict[str, list[Any]] = await r.json()
            return dump

    def _memory(self, soak: LoadResult) -> dict[str, Any]:
        out: dict[str, Any] = {}
        duration = max(soak.last_done - soak.first_send, 1e-9)
        for name, pid in self.stack.pids().items():
            samples = self.monitor.rss[name]
            window = [(t, kib / 1024) for t, kib in samples
                      if soak.first_send + duration * 0.25 <= t <= soak.last_done]
            per_second = slope(window)
            level = sum(v for _, v in window) / len(window) if window else 0.0
            growth = per_second * duration
            out[name] = {
                "peak_mib": memory_kib(pid)[1] / 1024,
                "soak_mean_mib": level,
                "soak_samples": len(window),
                "soak_slope_mib_per_min": per_second * 60,
                "soak_growth_mib": growth,
                "flat": abs(growth) <= max(2.0, 0.03 * level),
            }
        return out

    def _timelines(self, loads: tuple[LoadResult, ...], arrivals: dict[str, list[Any]]
                   ) -> dict[str, Any]:
        return {
            "origin": self.started,
            "accepted_buckets": [
                {"start": r.job.start_at, "buckets": r.ok_buckets} for r in loads],
            "counts": [(t, s.get(self.forms.plain, 0) + s.get(self.forms.delivery, 0), d)
                       for t, s, d in self.monitor.counts],
            "arrived": arrivals["arrived"],
            "rss": self.monitor.rss,
        }

    async def verify(self, arrivals: dict[str, list[Any]]) -> dict[str, Any]:
        """Every accepted request is one case; every case of the delivery form one delivery."""
        checks: dict[str, Any] = {}
        db = self.monitor.db
        stored_ids: dict[str, Counter[int]] = {}
        for form in (self.forms.plain, self.forms.delivery):
            rows = await db.fetch("SELECT data->>'text-field' AS t FROM cases WHERE form_id = $1",
                                  form)
            stored = Counter(int(r["t"].split("|", 1)[0][1:]) for r in rows)
            stored_ids[form] = stored
            accepted = set(self.accepted[form])
            checks[f"cases:{form}"] = {
                "accepted": len(self.accepted[form]), "stored": sum(stored.values()),
                "lost": len(accepted - set(stored)),
                "duplicates": sum(c - 1 for c in stored.values() if c > 1),
                "stored_but_unanswered": len(set(stored) - accepted),
                "answers": dict(self.answers[form]),
            }
        received = Counter(int(i) for i in arrivals["ids"])
        cases = stored_ids[self.forms.delivery]
        checks["deliveries"] = {
            "cases": len(cases), "received": sum(received.values()),
            "lost": len(set(cases) - set(received)),
            "duplicates": sum(c - 1 for c in received.values() if c > 1),
            "unexpected": len(set(received) - set(cases)),
            "unparseable": len(arrivals.get("bad", [])),
        }
        checks["delivery_log"] = await self._delivery_log(len(cases))
        checks["isolation"] = await isolation.check(self)
        checks["queues"] = await self._queues_settled()
        checks["services_alive"] = {name: name not in self.stack.dead()
                                    for name in self.stack.services}
        return checks

    async def _delivery_log(self, expected: int) -> dict[str, int]:
        """A delivery is in the log from its request on (pending, sending, retrying); it is
        finished once casestore recorded the outcome of the attempt the receiver answered."""
        db = self.monitor.db
        deadline = time.monotonic() + 30
        while True:
            rows = await db.fetch("SELECT state, count(*) AS n FROM deliveries"
                                  " WHERE form_id = $1 GROUP BY state", self.forms.delivery)
            states = {r["state"]: int(r["n"]) for r in rows}
            finished = states.get("succeeded", 0) + states.get("failed", 0)
            if finished >= expected or time.monotonic() > deadline:
                return {"expected": expected, "succeeded": states.get("succeeded", 0),
                        "failed": states.get("failed", 0),
                        "waiting": sum(states.values()) - finished}
            await asyncio.sleep(0.2)

    async def _queues_settled(self) -> dict[str, int]:
        deadline = time.monotonic() + 15
        while True:
            depths = await queue_depths(self.stack.amqp_url, self.stack.prefix)
            if not any(depths.values()) or time.monotonic() > deadline:
                return depths
            await asyncio.sleep(0.5)


def _load_summary(result: LoadResult) -> dict[str, Any]:
    return {"rate": result.ok_per_second, "ok": result.ok, "sent": result.sent,
            "seconds": result.window,
            "statuses": {str(k): v for k, v in result.statuses.items()},
            "errors": result.errors, "latency_ms": percentiles(result.latencies)}


def _in_job(arrivals: dict[str, list[Any]], job: Job) -> list[int]:
    return [i for i, request_id in enumerate(arrivals["ids"])
            if job.id_base <= request_id < job.id_base + JOB_ID_SPAN]


def _burst_delivery_rate(arrivals: dict[str, list[Any]], burst: LoadResult) -> float:
    """Cases per second from the burst's first POST until its last delivery arrived."""
    indexes = _in_job(arrivals, burst.job)
    if not indexes:
        return 0.0
    last = max(float(arrivals["arrived"][i]) for i in indexes)
    return len({arrivals["ids"][i] for i in indexes}) / max(last - burst.first_send, 1e-9)


def _e2e_latency(arrivals: dict[str, list[Any]], soak: LoadResult) -> dict[str, Any]:
    indexes = _in_job(arrivals, soak.job)
    latencies = [arrivals["arrived"][i] - arrivals["sent"][i] for i in indexes]
    return {"deliveries": len(indexes), "latency_ms": percentiles(latencies),
            "latencies": latencies}
