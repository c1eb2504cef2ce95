"""The dispatcher's attempts in flight: the process that began an attempt does not begin it
again while its lease lasts (an attempt message that comes back after a lost connection, a case
event published twice), and it keeps a first attempt to itself only while the endpoint's slots
are free or its wait for one is short."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from services.dispatcher.in_flight import MOST_HELD, InFlight


async def test_an_attempt_begun_here_is_begun_again_only_after_its_lease() -> None:
    in_flight = InFlight(initial_limit=4, default_ceiling=4)
    ran: list[str] = []

    async def attempt(name: str) -> None:
        ran.append(name)

    endpoint, delivery = uuid.uuid4(), uuid.uuid4()
    lease = datetime.now(UTC) + timedelta(seconds=30)
    in_flight.start(endpoint, (delivery, 1, lease), attempt("first"), taken=True)
    assert not in_flight.start(endpoint, (delivery, 1, lease), attempt("its message again"))
    assert not in_flight.start(endpoint, (delivery, 1, lease + timedelta(seconds=5)),
                               attempt("its case event again"), taken=True)
    # casestore never had the lease (the request that said so was lost) and hands it out.
    in_flight.start(endpoint, (delivery, 1, lease + timedelta(seconds=9)), attempt("handed out"))
    in_flight.start(endpoint, (delivery, 2, lease), attempt("second"))
    in_flight.start(endpoint, (uuid.uuid4(), 1, lease), attempt("another delivery"))
    # An attempt whose lease ran out: its outcome never reached casestore, which hands it out
    # again under a new lease.
    lapsed = uuid.uuid4()
    in_flight.start(endpoint, (lapsed, 1, datetime.now(UTC)), attempt("lapsed"))
    in_flight.start(endpoint, (lapsed, 1, lease), attempt("lapsed, handed out again"))
    await in_flight.drain(5)
    assert sorted(ran) == ["another delivery", "first", "handed out", "lapsed",
                           "lapsed, handed out again", "second"]
    assert not in_flight.held  # nothing counted as held once the attempts are done


def taken(in_flight: InFlight, endpoint: uuid.UUID, tries: int) -> int:
    return sum(in_flight.take_first(endpoint) for _ in range(tries))


def test_an_endpoint_never_heard_from_gets_only_its_free_slots() -> None:
    in_flight = InFlight(initial_limit=4, default_ceiling=4)
    endpoint = uuid.uuid4()
    assert taken(in_flight, endpoint, 10) == 4
    assert taken(in_flight, uuid.uuid4(), 10) == 4  # another endpoint has its own slots


def test_a_fast_endpoint_queues_first_attempts_here_for_up_to_the_wait() -> None:
    in_flight = InFlight(initial_limit=4, default_ceiling=4, first_attempt_wait_seconds=1.0)
    endpoint = uuid.uuid4()
    in_flight.outcome(endpoint, succeeded=True, seconds=0.01)
    # 4 slots at 10 ms an attempt: 100 rounds of 4 start within a second, after the 4 in the
    # slots.
    assert taken(in_flight, endpoint, 1000) == 404
    in_flight.release(endpoint)  # one finished: room for exactly one more
    assert taken(in_flight, endpoint, 10) == 1


def test_a_slow_or_failing_endpoint_queues_nothing_here() -> None:
    in_flight = InFlight(initial_limit=4, default_ceiling=4, first_attempt_wait_seconds=1.0)
    slow, failing = uuid.uuid4(), uuid.uuid4()
    in_flight.outcome(slow, succeeded=True, seconds=2.0)
    assert taken(in_flight, slow, 10) == 4
    in_flight.outcome(failing, succeeded=False, seconds=0.01)
    assert taken(in_flight, failing, 10) == 0
    in_flight.outcome(failing, succeeded=True, seconds=0.01)
    assert taken(in_flight, failing, 10) == 10


def test_the_wait_follows_the_endpoints_recent_attempts_and_is_bounded() -> None:
    in_flight = InFlight(initial_limit=4, default_ceiling=4, first_attempt_wait_seconds=1.0)
    endpoint = uuid.uuid4()
    in_flight.outcome(endpoint, succeeded=True, seconds=0.01)
    for _ in range(40):  # it became slow
        in_flight.outcome(endpoint, succeeded=True, seconds=1.5)
    assert taken(in_flight, endpoint, 10) == 4
    instant = uuid.uuid4()
    in_flight.outcome(instant, succeeded=True, seconds=0.0)
    assert taken(in_flight, instant, 2 * MOST_HELD) == MOST_HELD
    none_waits = InFlight(initial_limit=4, default_ceiling=4, first_attempt_wait_seconds=0.0)
    none_waits.outcome(endpoint, succeeded=True, seconds=0.001)
    assert taken(none_waits, endpoint, 10) == 4


async def test_a_taken_first_attempt_is_held_until_it_finishes() -> None:
    in_flight = InFlight(initial_limit=1, default_ceiling=1, first_attempt_wait_seconds=0.0)
    endpoint = uuid.uuid4()
    assert in_flight.take_first(endpoint)
    assert not in_flight.take_first(endpoint)
    finish = asyncio.Event()

    async def attempt() -> None:
        await finish.wait()

    in_flight.start(endpoint, (uuid.uuid4(), 1, datetime.now(UTC)), attempt(), taken=True)
    await asyncio.sleep(0)
    assert not in_flight.take_first(endpoint)  # still the one slot's attempt
    finish.set()
    await in_flight.drain(5)
    assert in_flight.take_first(endpoint)
