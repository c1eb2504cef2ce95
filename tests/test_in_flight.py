"""The dispatcher's attempts in flight: the process that began an attempt never begins it again
(an attempt message that comes back after a lost connection, a case event published twice)."""

import uuid

from services.dispatcher.in_flight import InFlight


async def test_an_attempt_begun_here_is_not_begun_again_but_its_next_number_is() -> None:
    in_flight = InFlight(concurrency=4)
    ran: list[str] = []

    async def attempt(name: str) -> None:
        ran.append(name)

    delivery = uuid.uuid4()
    in_flight.start((delivery, 1), attempt("first"))
    in_flight.start((delivery, 1), attempt("first again"))
    in_flight.start((delivery, 2), attempt("second"))
    in_flight.start((uuid.uuid4(), 1), attempt("another delivery"))
    await in_flight.drain(5)
    assert sorted(ran) == ["another delivery", "first", "second"]
