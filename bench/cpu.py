"""Where the CPU went during a phase: each service, the broker, the database, the load generator.

Read from /proc at the start and end of a phase, per process: Postgres and RabbitMQ are the sum
over their processes alive at the end (one that started meanwhile counts whole; one that exited
meanwhile, such as an autovacuum worker, is missing from both ends).
"""

import os
import time
from pathlib import Path

from bench.procs import cpu_seconds

BY_COMMAND = {"postgres": "postgres", "beam.smp": "rabbitmq"}


Snapshot = dict[str, dict[int, float]]


def _by_command() -> Snapshot:
    found: Snapshot = {group: {} for group in BY_COMMAND.values()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "comm").read_text().strip()
        except OSError:
            continue
        group = BY_COMMAND.get(command)
        if group is not None:
            found[group][int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


class CpuMeter:
    """`start()` then `stop()`: CPU share (1.0 = one core) per group over the interval."""

    def __init__(self, pids: dict[str, list[int]]):
        self.pids = pids
        self._start: Snapshot = {}
        self._machine: tuple[float, float] = (0.0, 0.0)
        self._wall = 0.0

    def _snapshot(self) -> Snapshot:
        values = {name: {p: cpu_seconds(p) for p in pids} for name, pids in self.pids.items()}
        values.update(_by_command())
        return values

    def start(self) -> None:
        self._start = self._snapshot()
        self._machine = _machine_busy()
        self._wall = time.monotonic()

    def stop(self) -> dict[str, float]:
        end = self._snapshot()
        busy, total = _machine_busy()
        wall = max(time.monotonic() - self._wall, 1e-9)
        shares = {}
        for name, pids in end.items():
            before = self._start.get(name, {})
            shares[name] = sum(t - before.get(pid, 0.0) for pid, t in pids.items()) / wall
        shares["machine"] = (busy - self._machine[0]) / wall
        shares["machine_capacity"] = (total - self._machine[1]) / wall
        return shares
