"""Optional (`--profile`): py-spy samples each service during a phase; top functions by self time.

py-spy runs with `--nonblocking` (it does not stop the process to sample), and still costs
the services some CPU on a small machine, so a profiled run's figures are not the benchmark's.
"""

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

TOP = 12
# Frames every sample passes through; they say nothing about where the time goes.
GENERIC = ("<module>", "_run_module_as_main", "_run_code", "serve (shared/service.py)",
           "run_app (aiohttp/web.py)", "_run (asyncio/events.py)")


class Profiler:
    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        # The venv's own py-spy (the bench extra) first, then any on PATH.
        beside = Path(sys.executable).parent / "py-spy"
        self.binary = str(beside) if beside.exists() else (shutil.which("py-spy") or "py-spy")
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.files: dict[str, Path] = {}

    def start(self, label: str, pids: dict[str, int]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            path = self.out_dir / f"{label.replace(' ', '-')}-{name}.txt"
            process = subprocess.Popen(  # noqa: S603 - py-spy from our own venv
                [self.binary, "record", "--nonblocking", "--format", "raw", "--rate", "200",
                 "--pid", str(pid), "--output", str(path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.running.append((f"{label}: {name}", process))
            self.files[f"{label}: {name}"] = path

    def stop(self) -> None:
        for _, process in self.running:
            process.send_signal(2)  # SIGINT: py-spy writes its file and exits
        for _, process in self.running:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.running.clear()

    def summaries(self) -> dict[str, Any]:
        return {key: summarise(path) for key, path in self.files.items() if path.exists()}

    def text(self) -> str:
        lines = ["py-spy: share of all samples by function, event-loop idle excluded (self = "
                 "innermost Python frame; total = anywhere in the stack; generic frames left out)"]
        for key, summary in self.summaries().items():
            lines.append(f"\n{key} ({summary['samples']:,} samples; "
                         f"{summary['idle_share']:.0%} idle in the event loop)")
            for row in summary["self"][:TOP]:
                lines.append(f"  self {row['share']:6.1%}  {row['function']}")
            shown = [r for r in summary["total"] if not any(g in r["function"]
                                                                for g in GENERIC)]
            for row in shown[:TOP]:
                lines.append(f"  total {row['share']:5.1%}  {row['function']}")
        return "\n".join(lines)


# With uvloop the loop itself is C: a sample whose innermost Python frame is aiohttp's run_app
# (or asyncio's loop on the default loop) is the event loop waiting for I/O.
IDLE_MARKERS = ("run_app (aiohttp/web.py)", "_run_once (asyncio/", "select (selectors")


def summarise(path: Path) -> dict[str, Any]:
    """py-spy's raw format: `frame;frame;...;leaf count` per distinct stack, root first."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    samples = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        if any(marker in frames[-1] for marker in IDLE_MARKERS):
            idle += count
            continue
        own[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
    total = max(samples, 1)
    return {
        "samples": samples, "idle_share": idle / total,
        "self": [{"function": f, "share": c / total} for f, c in own.most_common(40)],
        "total": [{"function": f, "share": c / total} for f, c in anywhere.most_common(60)],
    }


def _short(frame: str) -> str:
    """`func (pkg/sub/module.py:123)` to `func (sub/module.py)`: lines differ, functions not."""
    name, _, where = frame.partition(" (")
    parts = where.split(":", 1)[0].split("/")
    return f"{name} ({'/'.join(parts[-2:])})"
