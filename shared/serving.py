"""An app on its port, as every service runs it (and the tests do): slow clients held to time
limits, a cap on open connections, and a clean stop on SIGTERM or SIGINT.

A client that trickles its request a byte every few seconds holds a connection and a file
descriptor for as long as it likes unless something stops it:
- the head: aiohttp closes a connection that has not sent a whole request head within its
  keep-alive time of opening or of its last answer; that time is CASEWIRE_HEADER_TIMEOUT_SECONDS
  (so an idle keep-alive connection closes after it too);
- the body: shared.bodies gives a handler's read CASEWIRE_BODY_TIMEOUT_SECONDS, then answers
  408 and closes (after at most LINGER_SECONDS more);
- the number: past CASEWIRE_MAX_CONNECTIONS open connections a new one is closed at once.
"""

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from shared.errors import ConfigurationError, DependencyUnavailable
from shared.logging import configure_logging
from shared.service import SETTINGS
from shared.settings import Settings

log = structlog.get_logger(__name__)
# An answer still being written when a stop begins gets this long to finish.
SHUTDOWN_SECONDS = 10.0
# After an answer given before the body was read whole (a 408, a 404 for an unknown token),
# the rest of the body is read and dropped for this long, so the client sees the answer and
# not a reset; aiohttp's 10 s would let a trickling client hold on that much longer.
LINGER_SECONDS = 2.0


def cap_connections(server: Server, most: int) -> None:
    """Beyond `most` open connections, close each new one as it arrives (its client sees
    the connection reset and may try again), instead of taking file descriptors until none
    are left for the broker and database connections."""
    admit = server.connection_made
    refused = 0

    def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
        nonlocal refused
        admit(handler, transport)
        if len(server.connections) > most:
            transport.abort()
            refused += 1
            if refused in (1, 10, 100) or refused % 1000 == 0:  # a flood, in few lines
                log.warning("connections_refused", open=most, refused=refused)

    server.connection_made = connection_made  # type: ignore[method-assign]


async def start(app: web.Application, host: str, port: int,
                reuse_port: bool = False) -> web.AppRunner:
    """The app listening on host:port, under the limits of its settings."""
    settings: Settings = app[SETTINGS]
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS,
                           keepalive_timeout=settings.header_timeout_seconds,
                           lingering_time=LINGER_SECONDS)
    await runner.setup()
    assert runner.server is not None
    cap_connections(runner.server, settings.max_connections)
    await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
    return runner


async def _until_signalled(app: web.Application, host: str, port: int,
                           reuse_port: bool) -> None:
    runner = await start(app, host, port, reuse_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(service: str, create_app: Callable[[Settings], web.Application], port_of: Callable[
        [Settings], int], *, reuse_port: Callable[[Settings], bool] = lambda _: False
          ) -> None:
    """The whole of a service's `__main__`: settings, logging, event loop, run until signalled."""
    settings = Settings()
    configure_logging(service, settings.log_level, settings.log_json)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        asyncio.run(_until_signalled(create_app(settings), settings.host, port_of(settings),
                                     reuse_port(settings)))
    except (DependencyUnavailable, ConfigurationError) as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        sys.exit(2)
