"""Background tasks stop for sure: a swallowed cancellation is repeated until the task ends."""

import asyncio

import pytest

from shared.tasks import cancel_and_wait, wait_event


async def test_a_task_that_swallows_a_cancellation_is_still_stopped() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what a wait_for race or a failing rollback can do

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, retry_every=0.05), 5)
    assert task.cancelled()
    assert swallowed == 1


async def test_wait_event_returns_when_set_or_after_the_timeout_and_passes_cancels_on() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)
    await asyncio.wait_for(wait_event(event, 10), 5)

    unset = asyncio.Event()
    await asyncio.wait_for(wait_event(unset, 0.05), 5)  # returns on the timeout, no error
    assert not unset.is_set()

    waiting = asyncio.create_task(wait_event(asyncio.Event(), 10))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
