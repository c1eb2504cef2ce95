"""An endpoint's adaptive limit of requests in flight (services/dispatcher/limits.py), driven
answer by answer: slow start, additive growth, cuts once a round trip, the floor after no
answer, the ceiling, Retry-After, and room handed out first come first."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from services.dispatcher.limits import FLOOR, AdaptiveLimit, Signal, signal_of


@contextlib.asynccontextmanager
async def holding(limit: AdaptiveLimit, count: int) -> AsyncIterator[list[float]]:
    """`count` requests in flight (their start times), released at the end."""
    async with contextlib.AsyncExitStack() as stack:
        starts = []
        for _ in range(count):
            started = await stack.enter_async_context(limit.slot(1.0))
            assert started is not None
            starts.append(started)
        yield starts


async def answer_all(limit: AdaptiveLimit, signal: Signal, seconds: float = 0.1) -> None:
    """One round trip: as many requests as the limit allows, each answered with `signal`."""
    async with holding(limit, limit.current) as starts:
        for started in starts:
            limit.answered(started, signal, seconds)


@pytest.mark.parametrize(("status", "final", "seconds", "expected"), [
    (200, False, 0.1, "good"), (204, False, 0.2, "good"), (200, False, 0.5, "slow"),
    (429, False, 0.1, "overload"), (503, False, 0.1, "overload"), (502, False, 0.1, "overload"),
    (500, False, 0.1, "neutral"), (404, False, 0.1, "neutral"), (None, False, 10.0, "no_answer"),
    (None, True, 0.0, "neutral")])
def test_what_an_answer_says_about_the_endpoints_load(
        status: int | None, final: bool, seconds: float, expected: Signal) -> None:
    assert signal_of(status, final, seconds, baseline=0.1) == expected


async def test_slow_start_doubles_each_round_trip_up_to_the_ceiling() -> None:
    limit = AdaptiveLimit(initial=4, ceiling=50)
    for expected in (8, 16, 32, 50, 50):
        await answer_all(limit, "good")
        assert limit.current == expected


async def test_after_a_cut_it_grows_by_one_each_round_trip() -> None:
    limit = AdaptiveLimit(initial=16, ceiling=100)
    async with holding(limit, 16) as starts:
        limit.answered(starts[0], "overload", 0.1)
        limit.answered(starts[1], "overload", 0.1)  # sent before the cut: no second cut
    assert limit.current == 8
    for expected in (9, 10, 11):
        await answer_all(limit, "good")
        assert limit.current == expected


async def test_no_answer_drops_it_to_the_floor_and_slow_start_leads_back_to_half() -> None:
    limit = AdaptiveLimit(initial=40, ceiling=100)
    async with holding(limit, 1) as starts:
        limit.answered(starts[0], "no_answer", 10.0)
    assert limit.current == FLOOR
    for expected in (2, 4, 8, 16, 20, 21):
        await answer_all(limit, "good")
        assert limit.current == expected


async def test_an_unused_limit_does_not_grow() -> None:
    limit = AdaptiveLimit(initial=10, ceiling=100)
    for _ in range(50):  # one request at a time: a limit of 10 is never tried
        async with holding(limit, 1) as starts:
            limit.answered(starts[0], "good", 0.1)
    assert limit.current == 10


async def test_answers_that_slow_down_take_a_tenth_off_each_round_trip() -> None:
    limit = AdaptiveLimit(initial=20, ceiling=100)
    await answer_all(limit, "good", 0.05)  # baseline 50 ms
    grown = limit.current
    await answer_all(limit, "slow", 0.5)
    assert limit.current == int(grown * 0.9)
    await answer_all(limit, "slow", 0.5)
    assert limit.current == int(int(grown * 0.9) * 0.9)


async def test_neutral_answers_change_nothing() -> None:
    limit = AdaptiveLimit(initial=10, ceiling=100)
    await answer_all(limit, "neutral")
    assert limit.current == 10


async def test_a_lower_ceiling_applies_at_once() -> None:
    limit = AdaptiveLimit(initial=10, ceiling=100)
    limit.set_ceiling(3)
    assert limit.current == 3
    async with holding(limit, 3), limit.slot(0.05) as started:
        assert started is None  # a fourth finds no room


async def test_room_goes_to_waiters_first_come_first() -> None:
    limit = AdaptiveLimit(initial=1, ceiling=1)
    order: list[int] = []

    async def request(n: int) -> None:
        async with limit.slot(5.0) as started:
            assert started is not None
            order.append(n)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(request(n) for n in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert (limit.in_flight, len(limit.waiters)) == (0, 0)


async def test_a_waiter_that_gives_up_takes_no_room() -> None:
    limit = AdaptiveLimit(initial=1, ceiling=1)
    async with holding(limit, 1), limit.slot(0.05) as started:
        assert started is None
    assert (limit.in_flight, len(limit.waiters)) == (0, 0)
    async with limit.slot(0.05) as started:
        assert started is not None


async def test_retry_after_at_the_floor_holds_back_new_requests_until_it_has_passed() -> None:
    limit = AdaptiveLimit(initial=10, ceiling=100)
    async with holding(limit, 1) as starts:
        limit.answered(starts[0], "overload", 0.01, retry_after=0.5)
    async with limit.slot(0.1) as started:
        assert started is not None  # above the floor, the cut is the answer
    limit = AdaptiveLimit(initial=1, ceiling=100)
    async with holding(limit, 1) as starts:
        limit.answered(starts[0], "overload", 0.01, retry_after=0.5)
    began = time.monotonic()
    async with limit.slot(0.1) as started:
        assert started is None  # held back
    async with limit.slot(2.0) as started:
        assert started is not None
        assert started - began >= 0.45
