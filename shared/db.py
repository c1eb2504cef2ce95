"""asyncpg pool creation with JSON codecs and a clear error when Postgres is unreachable, the
LISTEN connections that outlive a failover, and the base of the typed rows queries return."""

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, Self

import asyncpg
import orjson
import structlog

from shared.errors import DependencyUnavailable
from shared.retry import startup_retry
from shared.secrets import redacted_url
from shared.settings import Settings
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)
# A connection of its own or one of a pool's: what a query runs on.
Queryable = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
# A LISTEN connection lost is opened again after this, then twice as long, up to the most.
LISTEN_RETRY_FIRST = 0.5
LISTEN_RETRY_MAX = 10.0


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

    @classmethod
    async def fetch(cls, conn: Queryable, query: str, *args: Any) -> list[Self]:
        return [cls.from_record(record) for record in await conn.fetch(query, *args)]

    @classmethod
    async def fetch_one(cls, conn: Queryable, query: str, *args: Any) -> Self | None:
        record = await conn.fetchrow(query, *args)
        return cls.from_record(record) if record is not None else None

    @classmethod
    async def written(cls, conn: Queryable, query: str, *args: Any) -> Self:
        """The row an INSERT or UPDATE ... RETURNING wrote (it always returns one)."""
        record = await conn.fetchrow(query, *args)
        assert record is not None, "the statement returned no row"
        return cls.from_record(record)


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


class Listener:
    """A LISTEN that outlives its connection. A wake-up hint only (the caller also polls), but
    one that should not end for good when Postgres fails over or restarts: when its connection
    ends, a new one is opened, to whichever host then takes writes, retrying ever less often
    (the caller polls meanwhile)."""

    def __init__(self, dsn: str, channel: str, callback: Callable[..., None]) -> None:
        self._dsn, self._channel, self._callback = dsn, channel, callback
        self._conn: asyncpg.Connection | None = None
        self._again: asyncio.Task[None] | None = None

    async def connect(self) -> bool:
        try:
            conn = await asyncpg.connect(self._dsn)
            await conn.add_listener(self._channel, self._callback)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False
        conn.add_termination_listener(self._lost)
        self._conn = conn
        return True

    def _lost(self, _: object) -> None:
        log.warning("listen_connection_lost_reconnecting", channel=self._channel)
        self._again = asyncio.create_task(self._reconnect(), name=f"listen-{self._channel}")

    async def _reconnect(self) -> None:
        delay = LISTEN_RETRY_FIRST
        while not await self.connect():
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_RETRY_MAX)
        log.warning("listen_connection_back", channel=self._channel)

    async def close(self) -> None:
        if self._again is not None:
            await cancel_and_wait(self._again)
        if self._conn is not None:
            self._conn.remove_termination_listener(self._lost)
            await self._conn.close()


async def listen(dsn: str, channel: str, callback: Callable[..., None]) -> Listener | None:
    """A connection of its own LISTENing on `channel`, opened again whenever it ends (a wake-up
    hint: the caller also polls); None if it cannot be had now, and the caller polls only."""
    listener = Listener(dsn, channel, callback)
    if await listener.connect():
        return listener
    log.warning("listen_unavailable_polling_only", channel=channel)
    return None
