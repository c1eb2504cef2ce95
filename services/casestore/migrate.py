"""Creates the database if missing and applies the numbered SQL migrations in order, once each."""

from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from shared.errors import DependencyUnavailable
from shared.secrets import redacted_url

log = structlog.get_logger(__name__)

# Any constant works: it only serialises concurrent migrators (several pods, a Job and a dev run).
MIGRATION_LOCK = 0x43415345


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in migrations/, ordered by version."""
    found = []
    for entry in resources.files("services.casestore.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


def maintenance_dsn(dsn: str) -> tuple[str, str]:
    parts = urlsplit(dsn)
    database = parts.path.lstrip("/")
    # template1 always exists; we only connect to it to issue CREATE DATABASE.
    return urlunsplit(parts._replace(path="/template1")), database


async def create_database(dsn: str) -> bool:
    """Create the target database if it does not exist; True if it was created."""
    admin_dsn, database = maintenance_dsn(dsn)
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if exists:
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{database}"')
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()


async def drop_database(dsn: str) -> None:
    """Drop a database (tests use this on their own throwaway databases only)."""
    admin_dsn, database = maintenance_dsn(dsn)
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()


async def apply_migrations(dsn: str) -> list[str]:
    """Apply pending migrations, each in its own transaction; returns the names applied."""
    conn = await asyncpg.connect(dsn, timeout=10)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("migration_applied", migration=name)
            applied.append(name)
    finally:
        await conn.close()
    return applied


async def migrate(dsn: str) -> list[str]:
    """Create the database if needed and bring its schema up to date."""
    try:
        if await create_database(dsn):
            log.info("database_created", dsn=redacted_url(dsn))
        return await apply_migrations(dsn)
    except (TimeoutError, OSError) as exc:
        raise DependencyUnavailable(
            f"Cannot reach Postgres at {redacted_url(dsn)} ({exc!r}); "
            "start it or set CASEWIRE_DATABASE_URL."
        ) from exc
