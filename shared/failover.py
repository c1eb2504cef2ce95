"""Broker failover: one robust connection over the nodes of a RabbitMQ cluster (`connect`,
which shared.broker re-exports)."""

import asyncio
from collections.abc import Sequence
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractRobustConnection
from yarl import URL

from shared.errors import DependencyUnavailable
from shared.retry import startup_retry
from shared.secrets import redacted_url
from shared.settings import Settings

log = structlog.get_logger(__name__)


class FailoverConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection over the nodes of a cluster (`NODES`, made by `over`).

    aio-pika reconnects to the one URL it was given. Every connection attempt that fails, and
    every open connection that drops, ends in `_on_connection_close`; there the next node
    becomes the URL of the following attempt, so a service whose node died reconnects to a
    live one, and its robust channels restore their queues and consumers there.
    """

    NODES: tuple[URL, ...] = ()

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None,
                 **kwargs: Any) -> None:
        super().__init__(url, loop, **kwargs)
        self._nodes = self.NODES or (self.url,)
        self._node = 0

    @classmethod
    def over(cls, urls: Sequence[str]) -> type["FailoverConnection"]:
        """The connection class for these nodes, tried in this order (aio-pika's
        `connect_robust` takes a class and one URL: the list travels on the class)."""
        return type(cls.__name__, (cls,), {"NODES": tuple(URL(url) for url in urls)})

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if len(self._nodes) > 1 and not self._close_called:
            self._node = (self._node + 1) % len(self._nodes)
            self.url = self._nodes[self._node]
            log.warning("broker_node_next", node=redacted_url(str(self.url)))
        await super()._on_connection_close(closing)


async def connect_to_nodes(urls: Sequence[str], attempt_seconds: float
                           ) -> AbstractRobustConnection:
    """aio-pika's `connect_robust` to the first node that answers, trying each in turn (its
    fail-fast first attempt goes to one URL); the connection then moves on by itself."""
    failed: Exception | None = None
    for first in range(len(urls)):
        nodes = FailoverConnection.over([*urls[first:], *urls[:first]])
        try:
            return await aio_pika.connect_robust(urls[first], timeout=attempt_seconds,
                                                 connection_class=nodes)
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            failed = exc
    assert failed is not None
    raise failed


async def connect(settings: Settings) -> AbstractRobustConnection:
    """Open the process's one robust connection, to the first broker node that answers (the
    others, in turn, if it goes), failing with a clear sentence if none is reachable."""
    urls = settings.broker_urls

    @startup_retry("rabbitmq")
    async def attempt() -> AbstractRobustConnection:
        return await connect_to_nodes(urls, settings.connect_timeout)

    try:
        return await attempt()
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
        where = ", ".join(redacted_url(url) for url in urls)
        raise DependencyUnavailable(
            f"Cannot reach RabbitMQ at {where} ({exc!r}); "
            "start it or set CASEWIRE_AMQP_URL (or CASEWIRE_AMQP_URLS)."
        ) from exc
