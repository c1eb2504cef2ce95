"""Child processes of the benchmark: started in their own session, always stopped, RSS read.

Each child gets PR_SET_PDEATHSIG, so even a `kill -9` of the benchmark takes its servers with
it; a normal exit or Ctrl-C stops them with SIGTERM (then SIGKILL) in `Children.stop_all`.
"""

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB: current and peak resident memory; (0, 0) if gone."""
    values = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                parts = line.split()
                if parts and parts[0] in values:
                    values[parts[0]] = int(parts[1])
    except OSError:
        pass
    return values["VmRSS:"], values["VmHWM:"]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Children:
    """Every process the benchmark started; `stop_all` ends them all, whatever happened."""

    log_dir: Path
    running: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None,
              cpus: set[int] | None = None, cwd: Path | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log: IO[bytes] = log_path.open("wb")
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            [sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
            cwd=cwd)
        log.close()
        if cpus:
            os.sched_setaffinity(process.pid, cpus)
        child = Child(name, process, log_path)
        self.running.append(child)
        return child

    def stop(self, child: Child, timeout: float = 15.0) -> None:
        if child.alive():
            child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(timeout)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(5)
        with contextlib.suppress(ValueError):
            self.running.remove(child)

    def stop_all(self) -> None:
        for child in list(self.running):
            if child.alive():
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in list(self.running):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.1, deadline - time.monotonic()))
            if child.alive():
                child.process.kill()
                child.process.wait(5)
        self.running.clear()


async def wait_http(child: Child, url: str, within: float = 30.0) -> None:
    """Until `url` answers 200; fails early, with the child's log, if the child exits."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited during start-up:\n{child.log_tail()}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} not ready at {url} within {within:.0f} s:\n"
                       f"{child.log_tail()}")
