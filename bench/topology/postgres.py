"""A Postgres primary with a streaming standby on loopback ports, beside the machine's own.

Both run as the `postgres` user from the run's own data directories. The primary commits
synchronously to the standby (`synchronous_standby_names = '*'`, `synchronous_commit = on`:
a commit is acknowledged once the standby has flushed it), so a commit acknowledged before
the primary dies is on the standby that `pg_ctl promote` turns into the new primary. That
setting is given to the primary alone (on its command line): the promoted standby, with no
standby of its own, must not wait for one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procs import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
SETTINGS = ("listen_addresses=127.0.0.1", "unix_socket_directories=", "wal_level=replica",
            "max_wal_senders=5", "hot_standby=on", "max_connections=200",
            "shared_buffers=64MB", "fsync=on")
SYNCHRONOUS = ("synchronous_standby_names=*", "synchronous_commit=on")


def as_postgres(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["runuser", "-u", "postgres", "--", *args],  # noqa: S603,S607
                            capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])}: {result.stdout[-500:]} {result.stderr[-1500:]}")
    return result


@dataclass
class Server:
    data: Path
    port: int
    options: tuple[str, ...]

    def start(self) -> None:
        flags = " ".join(f"-c {option}" for option in self.options)
        as_postgres(str(BIN / "pg_ctl"), "start", "-w", "-D", str(self.data), "-l",
                    str(self.data.parent / f"{self.data.name}.log"), "-o",
                    f"-p {self.port} {flags}")

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        return int(pidfile.read_text().split()[0]) if pidfile.exists() else None

    def kill(self) -> None:
        """kill -9 of the postmaster, as a crashed host: its backends are gone with it."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        # Orphaned backends of a killed postmaster notice at once and exit.
        (self.data / "postmaster.pid").unlink(missing_ok=True)

    def stop(self) -> None:
        if self.pid() is not None:
            try:
                as_postgres(str(BIN / "pg_ctl"), "stop", "-m", "immediate", "-D",
                            str(self.data), timeout=60)
            except RuntimeError:
                self.kill()


class PostgresPair:
    """The primary and its synchronous standby; `failover` kills one and promotes the other."""

    def __init__(self, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        os.chown(work, *_postgres_ids())
        self.primary = Server(work / "primary", free_port(), (*SETTINGS, *SYNCHRONOUS))
        self.standby = Server(work / "standby", free_port(), SETTINGS)

    def dsn(self, database: str) -> str:
        """Both hosts: asyncpg connects to whichever is the read-write one."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    def primary_dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.primary.port}/{database}"

    def start(self) -> None:
        as_postgres(str(BIN / "initdb"), "-D", str(self.primary.data), "-A", "trust",
                    "-U", "postgres", "--no-sync")
        with (self.primary.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        self.primary.start()
        as_postgres(str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port),
                    "-U", "postgres", "-D", str(self.standby.data), "-R", "-X", "stream")
        self.standby.start()
        self.wait_synchronous()

    def wait_synchronous(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        query = "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
        while time.monotonic() < deadline:
            result = as_postgres(str(BIN.parent / "bin/psql"), "-h", "127.0.0.1", "-p",
                                 str(self.primary.port), "-tA", "-c", query)
            if result.stdout.strip() == "1":
                return
            time.sleep(0.5)
        raise RuntimeError("the standby never became synchronous")

    def failover(self) -> None:
        """The primary dies (kill -9); the standby is promoted and becomes the primary."""
        self.primary.kill()
        as_postgres(str(BIN / "pg_ctl"), "promote", "-w", "-D", str(self.standby.data))
        self.primary, self.standby = self.standby, self.primary

    def stop(self) -> None:
        for server in (self.primary, self.standby):
            server.stop()


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid
