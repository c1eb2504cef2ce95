"""asyncpg pool creation with JSON codecs and a clear error when Postgres is unreachable, and
the base of the typed rows queries return."""

from collections.abc import Callable
from typing import Any, ClassVar, Self

import asyncpg
import orjson
import structlog

from shared.errors import DependencyUnavailable
from shared.retry import startup_retry
from shared.secrets import redacted_url
from shared.settings import Settings

log = structlog.get_logger(__name__)


class TypedRow:
    """Base of the frozen dataclasses queries return, one field per selected column."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Any]]

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Self:
        return cls(**record)

    @classmethod
    def columns(cls) -> str:
        """The fields as a SELECT list, so a query reads exactly what the row holds."""
        return ", ".join(cls.__dataclass_fields__)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=_dumps, decoder=orjson.loads,
                                  schema="pg_catalog")


async def _reset(conn: asyncpg.Connection) -> None:
    """Before a connection goes back to the pool.

    asyncpg's default reset costs a round trip on every release (a measurable share of
    casestore's CPU: bench/results/history.md); pooled connections never carry session state (no
    SET, LISTEN, advisory lock or cursor: the outbox listener and migrations use connections of
    their own), so only a transaction left open by a cancelled task needs undoing.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(settings: Settings, dsn: str | None = None) -> asyncpg.Pool:
    """Open the process's one pool; raises DependencyUnavailable with the setting to change."""
    target = dsn or settings.database_url

    @startup_retry("postgres")
    async def attempt() -> asyncpg.Pool:
        pool = await asyncpg.create_pool(
            target,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            init=_init_connection,
            reset=_reset,
            timeout=settings.connect_timeout,
        )
        assert pool is not None
        return pool

    try:
        return await attempt()
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DependencyUnavailable(
            f"Cannot reach Postgres at {redacted_url(target)} ({exc!r}); "
            "start it, run `make migrate`, or set CASEWIRE_DATABASE_URL."
        ) from exc


async def listen(dsn: str, channel: str,
                 callback: Callable[..., None]) -> asyncpg.Connection | None:
    """A connection of its own LISTENing on `channel` (a wake-up hint: the caller also polls);
    None if it cannot be had now, and the caller polls only."""
    try:
        conn = await asyncpg.connect(dsn)
        await conn.add_listener(channel, callback)
        return conn
    except (OSError, asyncpg.PostgresError):
        log.warning("listen_unavailable_polling_only", channel=channel)
        return None
