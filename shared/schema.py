"""Is the database schema as new as this code? Every service's /readyz asks.

casestore owns the migrations (`services/casestore/migrations/NNN_*.sql`, applied by
`casewire migrate` into `schema_migrations`); a pod started before the migration Job ran must
not take traffic, or its queries fail on columns that are not there yet. A schema newer than
the code is fine (the old pods of a rolling deploy).
"""

from functools import cache
from importlib import resources

import asyncpg

MIGRATIONS_PACKAGE = "services.casestore.migrations"
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


@cache
def expected_version() -> int:
    """The highest migration shipped with this code."""
    return max(int(entry.name.split("_", 1)[0])
               for entry in resources.files(MIGRATIONS_PACKAGE).iterdir()
               if entry.name.endswith(".sql"))


async def applied_version(conn: Conn) -> int:
    """The highest migration applied to the database (0 if it was never migrated)."""
    try:
        version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        return 0
    return int(version or 0)


class SchemaCheck:
    """Remembers a schema once it was current: a schema never gets older under running code."""

    def __init__(self) -> None:
        self.current = False

    async def check(self, pool: asyncpg.Pool) -> bool:
        """True once the applied version reaches the code's; False while it is older.

        Raises what the pool raises when Postgres cannot be reached: the caller decides
        whether that is its readiness (ingest keeps serving from its cache without Postgres).
        """
        if not self.current:
            async with pool.acquire(timeout=2) as conn:
                self.current = await applied_version(conn) >= expected_version()
        return self.current
