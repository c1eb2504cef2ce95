"""Background tasks that wake on an event or a timer, and stop for sure when cancelled.

Python 3.11's `asyncio.wait_for` can swallow a cancellation that arrives just as the awaited
event fires, and a library can turn a cancellation into another error on its way out (a
rollback that fails). A loop-forever task that loses its cancellation never ends, and the
shutdown that awaits it hangs.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` passed; unlike `wait_for`, never eats a cancel."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def cancel_and_wait(task: asyncio.Task[Any], retry_every: float = 1.0) -> None:
    """Cancel `task` and wait until it has ended, cancelling again if it swallowed one."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_every)
        if not task.done():
            log.warning("task_ignored_cancellation", task=task.get_name())
    if not task.cancelled() and task.exception() is not None:
        log.error("task_failed", task=task.get_name(), error=repr(task.exception()))


async def every(seconds: float, work: Callable[[], Awaitable[Any]], failed: str) -> None:
    """`work` every `seconds` for as long as the task lives (each round bounded in time). A
    round that fails (a dependency away, or a bug) is logged as `failed` and the next tries
    again: a task that died would leave what it keeps stale, unnoticed."""
    while True:
        try:
            async with asyncio.timeout(max(seconds, 5.0)):
                await work()
        except Exception as exc:
            log.warning(failed, error=repr(exc))
        await asyncio.sleep(seconds)
