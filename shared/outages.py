"""Holding messages through a dependency outage, so that an outage never spends a delivery.

A quorum queue counts every return of a message (a requeue, a closed channel) toward its
delivery limit, so requeueing through a long database outage dead-letters good messages. When a
handler fails with an outage error and the service's probe confirms a dependency is down, the
consumer stops taking new messages, the ones in hand wait, and everything resumes by itself once
the probe passes again. If the probe passes while a message keeps failing, the failure is the
message's own, and the delivery limit still catches it; unless the broker would not take what
the handler published (BrokerUnavailable: a node lost, a quorum queue electing its leader),
which is never the message's fault: it is tried again, ever less often, in place.

A message held longer than the hold limit is handed back uncounted (a copy goes to its queue, then
the original is acked): the broker's consumer timeout (30 minutes by default) would otherwise
close the channel and count a return for every message in hand.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from shared.errors import DependencyUnavailable
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

OUTAGES = (DependencyUnavailable, OSError, TimeoutError, asyncpg.PostgresConnectionError,
           asyncpg.InterfaceError, asyncpg.CannotConnectNowError)
Probe = Callable[[], Awaitable[bool]]
Switch = Callable[[], Awaitable[None]]
FIRST_PROBE_DELAY = 0.5
PROBE_TIMEOUT = 5.0


class HoldExpired(Exception):
    """Held as long as allowed, or the consumer is stopping: hand the message back."""


class OutageGate:
    """One per consumer: knows whether its dependencies are down, pauses and resumes it."""

    def __init__(self, probe: Probe, *, retry_seconds: float, hold_seconds: float) -> None:
        self._probe = probe
        self._retry_seconds = retry_seconds
        self._hold_seconds = hold_seconds
        self._up = asyncio.Event()
        self._up.set()
        self._releasing = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None
        self._pause: Switch | None = None
        self._resume: Switch | None = None

    def attach(self, pause: Switch, resume: Switch) -> None:
        """How to stop and restart taking messages (the consumer's own basic.cancel/consume)."""
        self._pause, self._resume = pause, resume

    @property
    def down(self) -> bool:
        return not self._up.is_set()

    async def confirms_outage(self) -> bool:
        """True if a dependency is down (the caller should hold its message); starts the pause."""
        if self.down:
            return True
        if await self._probe_passes():
            return False
        if not self.down:  # another message may have confirmed it while we probed
            self._up.clear()
            log.warning("dependency_outage_consumer_paused")
            self._watch = asyncio.create_task(self._watch_until_back(), name="outage-watch")
        return True

    async def hold(self, held_since: float) -> None:
        """Until the dependencies are back; HoldExpired at the hold limit or on shutdown."""
        remaining = held_since + self._hold_seconds - time.monotonic()
        waiting = {asyncio.ensure_future(self._up.wait()),
                   asyncio.ensure_future(self._releasing.wait())}
        try:
            await asyncio.wait(waiting, timeout=max(0.0, remaining),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiting:
                task.cancel()
        if not self._up.is_set():
            raise HoldExpired

    async def wait_out(self, held_since: float, attempt: int) -> None:
        """A pause before trying a message again that the broker would not take (its database
        may well be up): longer each time up to the retry period; HoldExpired at the hold
        limit or on shutdown, as `hold`."""
        delay = min(FIRST_PROBE_DELAY * 2 ** (attempt - 1), self._retry_seconds)
        remaining = held_since + self._hold_seconds - time.monotonic()
        if remaining <= 0 or self._releasing.is_set():
            raise HoldExpired
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(delay, remaining)):
                await self._releasing.wait()
        if self._releasing.is_set():
            raise HoldExpired

    async def close(self) -> None:
        """Shutdown: every held message is handed back, the watch stops."""
        self._releasing.set()
        if self._watch is not None:
            await cancel_and_wait(self._watch)

    async def _probe_passes(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                return await self._probe()
        except Exception:
            return False

    async def _watch_until_back(self) -> None:
        started = time.monotonic()
        await self._switch(self._pause)
        await self._until(self._probe_passes)
        self._up.set()
        log.warning("dependency_back_consumer_resumed",
                    outage_seconds=round(time.monotonic() - started, 1))
        await self._until(lambda: self._switch(self._resume))

    async def _until(self, attempt: Callable[[], Awaitable[bool]]) -> None:
        """Try until it works, waiting longer each time up to the retry period."""
        delay = FIRST_PROBE_DELAY
        while True:
            if await attempt():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_seconds)

    @staticmethod
    async def _switch(switch: Switch | None) -> bool:
        if switch is None:
            return True
        try:
            await switch()
            return True
        except Exception as exc:  # the broker may be down too; the watch tries again
            log.warning("consumer_switch_failed", error=repr(exc))
            return False
