"""casestore writes case commands in batches: each command still gets its own outcome."""

import asyncio
import uuid

import aiohttp
import pytest

from shared.batcher import Batcher
from shared.errors import DependencyUnavailable
from shared.event_payloads import CaseCreateRequested
from shared.events import CASE_CREATE_REQUESTED, Envelope, new_event
from shared.settings import Settings
from tests.helpers import EventTap, FormFactory, publish_raw, wait_dead_lettered, wait_for_cases


def create_command(form_id: str, text: str, correlation_id: str) -> Envelope:
    command = CaseCreateRequested(webhook_id=uuid.uuid4(), data={"text-field": text},
                                  creator="Addon - Incoming Webhook")
    return new_event(CASE_CREATE_REQUESTED, command, form_id=form_id,
                     correlation_id=correlation_id)


async def test_command_for_a_missing_form_is_dead_lettered_and_the_rest_of_its_batch_created(
        make_form: FormFactory, settings: Settings, api: aiohttp.ClientSession,
        events: EventTap) -> None:
    hook = await make_form()
    good = [create_command(hook["form_id"], f"case {i}", f"batch-{i}") for i in range(40)]
    orphan = create_command(f"gone-{uuid.uuid4().hex}", "orphan", "orphan")
    # One burst, so the orphan shares a batch with good commands.
    await publish_raw(settings, CASE_CREATE_REQUESTED,
                      [e.to_bytes() for e in good[:20]] + [orphan.to_bytes()]
                      + [e.to_bytes() for e in good[20:]])
    cases = await wait_for_cases(api, hook["form_id"], 40, within=30)
    assert sorted(c["case_number"] for c in cases) == list(range(1, 41))
    assert {c["id"] for c in cases} == {str(e.id) for e in good}
    await wait_dead_lettered(settings, str(orphan.id).encode())
    # Each case's event carries its own command's correlation id, not its batch-mates'.
    seen: dict[str, str] = {}
    while len(seen) < 40:
        created = await events.next(lambda e: e["type"] == "case.created"
                                    and e["form_id"] == hook["form_id"])
        seen[created["causation_id"]] = created["correlation_id"]
    assert seen == {str(e.id): e.correlation_id for e in good}


async def test_batcher_gives_a_failing_item_its_error_and_the_others_their_results() -> None:
    written: list[list[int]] = []

    async def write(items: list[int]) -> list[int | Exception]:
        written.append(items)
        if 13 in items:
            raise ValueError("13 is poison")
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher("test", write, max_size=100)
    async with batcher.running():
        outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(20)),
                                        return_exceptions=True)
    assert outcomes[:13] == [i * 10 for i in range(13)]
    assert isinstance(outcomes[13], ValueError)
    assert outcomes[14:] == [i * 10 for i in range(14, 20)]
    assert len(written[0]) > 1, "concurrent submissions should share a batch"


async def test_batcher_passes_an_outage_to_every_item_of_the_batch() -> None:
    async def write(items: list[int]) -> list[int | Exception]:
        raise DependencyUnavailable("database restarting")

    batcher: Batcher[int, int] = Batcher("test", write, max_size=100)
    async with batcher.running():
        outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(5)),
                                        return_exceptions=True)
    assert all(isinstance(o, DependencyUnavailable) for o in outcomes)


async def test_batcher_cancels_waiting_callers_when_stopped() -> None:
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int | Exception]:
        await release.wait()
        return list(items)

    batcher: Batcher[int, int] = Batcher("test", write, max_size=100)
    async with batcher.running():
        waiting = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.05)
    with pytest.raises(asyncio.CancelledError):
        await waiting
