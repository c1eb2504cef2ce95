"""Distant receivers: what loopback receivers that answer in microseconds hide.

Each receiver is the bench receiver's `/distant/<bucket>` with an answer time and a capacity
(requests at once, beyond which it answers 429 with `Retry-After: 1`); its capacity per second
is that concurrency over the answer time. One automation each, and a burst of cases posted at
`rate` (open loop), until every case arrived:

- `distant 50 ms`: answers after 50 ms, takes 10 at once (200/s);
- `distant 200 ms`: answers after 200 ms, takes 100 at once (500/s);
- `distant 429 above 20`: answers after 100 ms, 429 above 20 at once (200/s).

For each: deliveries/s from the burst's first POST to its last arrival, against what the
receiver could take (the lower of its capacity and the rate posted): the ratio. The busiest
the receiver got (`peak`) shows the adaptive limit at work (a fixed 4 would show 4).

Then an outage (`outage 20 s`, not in the quick profile): 1,500 cases at 100/s to a receiver
that answers 503 from the 2nd to the 22nd second: the share that arrived within 150 s of the
first POST, and when 95% had.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from bench import workload
from bench.loadgen import Job

if TYPE_CHECKING:
    from bench.casewire import CasewireBench


@dataclass(frozen=True)
class Receiver:
    bucket: str
    ms: int
    most: int

    @property
    def capacity(self) -> float:
        """Requests a second it can take."""
        return self.most / (self.ms / 1000)


RECEIVERS = (Receiver("distant-50ms", 50, 10), Receiver("distant-200ms", 200, 100),
             Receiver("distant-429-above-20", 100, 20))
OUTAGE = Receiver("outage", 5, 1000)
OUTAGE_CASES, OUTAGE_RATE, OUTAGE_FROM, OUTAGE_SECONDS, OUTAGE_WITHIN = 1500, 100.0, 2.0, 20.0, 150
PHASE_NAMES = {RECEIVERS[0]: "distant 50 ms", RECEIVERS[1]: "distant 200 ms",
               RECEIVERS[2]: "distant 429 above 20", OUTAGE: "outage 20 s"}


async def measure(bench: CasewireBench, cases: int, rate: float, outage: bool
                  ) -> dict[str, Any]:
    """Each receiver's burst of `cases` at `rate`, then the outage if asked."""
    figures: dict[str, Any] = {"cases": cases, "rate": rate, "receivers": {}}
    for receiver in RECEIVERS:
        path = await _form(bench, receiver, retry="extended")
        figures["receivers"][receiver.bucket] = await _burst(bench, receiver, path, cases, rate)
    if outage:
        path = await _form(bench, OUTAGE, retry="standard")
        figures["outage"] = await _outage(bench, path)
    return figures


async def _form(bench: CasewireBench, receiver: Receiver, retry: str) -> str:
    automation = workload.automation(
        f"{bench.receiver_url}/distant/{receiver.bucket}?ms={receiver.ms}&most={receiver.most}",
        name=f"bench {receiver.bucket}")
    automation["action"]["settings"]["retry"] = retry
    return await bench.stack.create_form(f"bench-{receiver.bucket}", automation)


def _job(bench: CasewireBench, path: str, cases: int, rate: float) -> Job:
    return Job(port=bench.stack.ports["ingest"], path=path, body=workload.BODY_TEMPLATE,
               connections=bench.profile.open_loop_connections, duration=3600, rate=rate,
               max_requests=cases, id_base=bench.next_id_base(), drain_timeout=30.0)


async def _burst(bench: CasewireBench, receiver: Receiver, path: str, cases: int,
                 rate: float) -> dict[str, Any]:
    await bench.settle()
    name = PHASE_NAMES[receiver]
    load = await bench.load(name, f"bench-{receiver.bucket}", _job(bench, path, cases, rate))
    await bench.drain(f"{name} drain", _arrived(bench, receiver), load.ok)
    arrived = (await _dump(bench, receiver))["arrived"]
    seconds = (max(arrived) - load.first_send) if arrived else None
    delivered = len(arrived)
    could_take = min(receiver.capacity, rate)
    per_second = delivered / seconds if seconds else 0.0
    return {"ms": receiver.ms, "most": receiver.most, "capacity": receiver.capacity,
            "accepted": load.ok, "delivered": delivered, "seconds": seconds,
            "per_second": per_second, "ratio": per_second / could_take,
            "peak": (await _stats(bench))["peaks"].get(receiver.bucket, 0)}


async def _outage(bench: CasewireBench, path: str) -> dict[str, Any]:
    await bench.settle()
    name = PHASE_NAMES[OUTAGE]
    job = _job(bench, path, OUTAGE_CASES, OUTAGE_RATE)
    switching = asyncio.create_task(_down_for(bench, OUTAGE_FROM, OUTAGE_SECONDS))
    load = await bench.load(name, f"bench-{OUTAGE.bucket}", job)
    await switching
    # The circuit opened in the outage holds for a minute before its probe: wait for the 95%
    # until the goal's 150 s from the first POST are over, not the other phases' drain time.
    left = OUTAGE_WITHIN - (time.monotonic() - load.first_send)
    await bench.drain(f"{name} drain", _arrived(bench, OUTAGE), int(load.ok * 0.95),
                      within=max(left, 1.0))
    await asyncio.sleep(2.0)  # a few more may come
    arrived = sorted(t - load.first_send for t in (await _dump(bench, OUTAGE))["arrived"])
    within = sum(1 for t in arrived if t <= OUTAGE_WITHIN)
    at_95 = arrived[int(load.ok * 0.95) - 1] if len(arrived) >= int(load.ok * 0.95) else None
    return {"accepted": load.ok, "outage_seconds": OUTAGE_SECONDS, "arrived": len(arrived),
            f"within_{OUTAGE_WITHIN}s": within / max(load.ok, 1),
            "seconds_to_95_percent": at_95}


async def _down_for(bench: CasewireBench, after: float, seconds: float) -> None:
    await asyncio.sleep(after)
    async with aiohttp.ClientSession() as http:
        await http.post(f"{bench.receiver_url}/down/{OUTAGE.bucket}")
        started = time.monotonic()
        await asyncio.sleep(seconds)
        await http.post(f"{bench.receiver_url}/up/{OUTAGE.bucket}")
    bench.say(f"outage: receiver answered 503 for {time.monotonic() - started:.1f} s")


def _arrived(bench: CasewireBench, receiver: Receiver) -> Any:
    return lambda: bench.monitor.buckets.get(receiver.bucket, 0)


async def _dump(bench: CasewireBench, receiver: Receiver) -> dict[str, list[Any]]:
    async with aiohttp.ClientSession() as http, http.get(
            f"{bench.receiver_url}/dump", params={"bucket": receiver.bucket}) as resp:
        dump: dict[str, list[Any]] = await resp.json()
        return dump


async def _stats(bench: CasewireBench) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{bench.receiver_url}/stats") as resp:
        stats: dict[str, Any] = await resp.json()
        return stats
