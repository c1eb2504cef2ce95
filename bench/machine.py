"""What the figures were measured on: CPU, cores, memory, versions of everything involved."""

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg

from services.casestore.migrate import maintenance_dsn


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


async def describe(amqp_url: str, database_url: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count() or 0,
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_gib(), 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in
                     ("aiohttp", "aio-pika", "asyncpg", "uvloop", "orjson", "pydantic")},
    }
    try:
        # The server, not a database, is described: Casewire's own may not exist yet.
        conn = await asyncpg.connect(maintenance_dsn(database_url)[0], timeout=5)
        try:
            info["postgres"] = await conn.fetchval("SHOW server_version")
            info["postgres_settings"] = {
                r["name"]: r["setting"] for r in await conn.fetch(
                    "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                    ["synchronous_commit", "fsync", "shared_buffers", "wal_sync_method",
                     "autovacuum"])}
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        info["postgres"] = f"unreachable: {exc!r}"
    try:
        connection = await aio_pika.connect(amqp_url, timeout=5)
        try:
            props = connection.transport.connection.server_properties  # type: ignore[union-attr]
            info["rabbitmq"] = _text(props.get("version", "?"))
        finally:
            await connection.close()
    except Exception as exc:
        info["rabbitmq"] = f"unreachable: {exc!r}"
    return info


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def summary(info: dict[str, Any]) -> str:
    usable = info["cores_usable"]
    cores = f"{info['cores']} cores" + (f" ({usable} usable)" if usable != info["cores"] else "")
    return (f"{info['cpu_model']}, {cores}, {info['memory_gib']} GiB; Linux {info['kernel']}; "
            f"Python {info['python']}; Postgres {info.get('postgres')}{_vacuum(info)}; "
            f"RabbitMQ {info.get('rabbitmq')}")


def _vacuum(info: dict[str, Any]) -> str:
    """Without autovacuum the delivery schedule and the outbox keep their dead rows, and the
    database's CPU per case grows through the run: figures not comparable to a default
    server's."""
    off = info.get("postgres_settings", {}).get("autovacuum") == "off"
    return " (AUTOVACUUM OFF: its CPU grows through the run)" if off else ""
