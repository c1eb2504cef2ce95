"""The operator's commands on real messages and a real stack: dead letters, status, automations,
and the settings `casewire run` leaves for them."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import aiohttp
import pytest

from services.cli.state import ENV_FILE
from shared import broker_topology
from shared.event_payloads import CaseCreateRequested
from shared.events import CASE_CREATE_REQUESTED, new_event
from shared.settings import Settings
from tests.helpers import (
    CASEWIRE,
    AutomationFactory,
    FormFactory,
    call,
    cli_env,
    delete_broker_objects,
    until,
)
from tests.stack import Stack, free_port, isolated_settings
from tests.test_cli import casewire_run, own_directory, run_env

__all__ = ["own_directory", "run_env"]  # fixtures used here
Run = Callable[..., Awaitable[tuple[int, str]]]


def stack_env(settings: Settings, **overrides: str) -> dict[str, str]:
    values = {"database_url": settings.database_url, "amqp_url": settings.amqp_url,
              "name_prefix": settings.name_prefix, "admin_token": settings.admin_token,
              "casestore_url": settings.casestore_url, "dispatcher_url": settings.dispatcher_url,
              "public_base_url": settings.public_base_url}
    return cli_env(**{**values, **overrides})


async def run_cli(env: dict[str, str], *argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*CASEWIRE, *argv, env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
def casewire(stack: Stack) -> Run:
    """`casewire ARGS...` against the test stack: its exit code and output."""
    return lambda *argv: run_cli(stack_env(stack.settings), *argv)


async def publish_with_ids(settings: Settings, routing_key: str,
                           messages: dict[str, bytes]) -> None:
    """Onto the run's events exchange, each with its message id (a dead letter's id)."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{settings.name_prefix}.events")
        for message_id, body in messages.items():
            await exchange.publish(aio_pika.Message(
                body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=routing_key)


async def eventually(probe: Callable[[], Awaitable[list[list[str]]]],
                     within: float = 20.0) -> list[list[str]]:
    """`probe` (a command run: slow on a busy machine) until it finds something, by the clock."""
    deadline = asyncio.get_running_loop().time() + within
    while not (found := await probe()):
        assert asyncio.get_running_loop().time() < deadline, "never found"
        await asyncio.sleep(0.2)
    return found


def rows_with(listing: str, *ids: str) -> list[list[str]]:
    """The listing's rows of these ids, in the order shown."""
    return [line.split() for line in listing.splitlines()
            if line.split() and line.split()[0] in ids]


async def listed(casewire: Run, *ids: str, args: tuple[str, ...] = ()) -> list[list[str]]:
    """`dead-letters list` once every id is there."""

    async def probe() -> list[list[str]]:
        code, out = await casewire("dead-letters", "list", *args)
        assert code == 0, out
        rows = rows_with(out, *ids)
        return rows if {r[0] for r in rows} == set(ids) else []

    return await eventually(probe)


async def test_dead_letters_are_listed_with_why_shown_whole_requeued_and_purged(
        casewire: Run, settings: Settings, api: aiohttp.ClientSession) -> None:
    marker = uuid.uuid4().hex
    garbage = f"not an envelope {marker}".encode()
    orphan = new_event(CASE_CREATE_REQUESTED, CaseCreateRequested(
        webhook_id=uuid.uuid4(), data={"text-field": marker}, creator="test"),
        form_id=f"gone-{marker}").to_bytes()
    ids = f"garbage-{marker}", f"orphan-{marker}"
    await publish_with_ids(settings, CASE_CREATE_REQUESTED, dict(zip(ids, (garbage, orphan),
                                                                     strict=True)))
    rows = await listed(casewire, *ids)
    assert [r[0] for r in rows] == list(ids)  # oldest first
    casestore_queue = f"{settings.name_prefix}.casestore"
    for row, reason in zip(rows, ("unparseable", "permanent"), strict=True):
        assert row[2:5] == [reason, casestore_queue, CASE_CREATE_REQUESTED]
    _, out = await casewire("dead-letters", "list")
    assert f"gone-{marker} no longer exists" in out
    # Listing hands every message back, in its place.
    assert await listed(casewire, *ids) == rows

    code, shown = await casewire("dead-letters", "show", ids[1])
    assert code == 0
    assert f'"text-field": "{marker}"' in shown  # the body, whole
    assert "x-casewire-error" in shown

    code, out = await casewire("dead-letters", "requeue", ids[0])
    assert (code, rows_with(out, ids[0])[0][1:]) == (0, [casestore_queue, "requeued"])
    # Back in its queue, casestore dead-letters it again: the newest now.
    again = await eventually(lambda: dead_lettered_after(casewire, ids))
    assert [r[0] for r in again] == [ids[1], ids[0]]

    code, out = await casewire("dead-letters", "purge", "--reason", "permanent")
    assert code == 2
    assert "add --yes" in out
    code, out = await casewire("dead-letters", "purge", "--yes", "--reason", "permanent")
    assert code == 0
    _, out = await casewire("dead-letters", "list")
    assert [r[0] for r in rows_with(out, *ids)] == [ids[0]]
    code, out = await casewire("dead-letters", "purge", "--yes")
    assert code == 0
    assert (await casewire("dead-letters", "list"))[1].strip() == "no dead letters"
    # Each change on the broker is in the audit log, with who ran the command, and where.
    entries = (await call(api, "GET", "/api/audit-log", 200, params={
        "target": f"{settings.name_prefix}.dead-letters", "limit": "10"}))["entries"]
    requeued = next(e for e in entries if e["action"] == "dead_letters.requeued")
    assert requeued["diff"]["after"] == {"count": 1, "ids": [ids[0]]}
    assert requeued["actor"] == "admin-token"
    assert requeued["via"].startswith("admin token (cli ")
    purges = [e["diff"]["after"] for e in entries if e["action"] == "dead_letters.purged"]
    assert {"count": 1, "ids": [ids[1]], "filters": {"reason": "permanent"}} in purges


async def dead_lettered_after(casewire: Run, ids: tuple[str, ...]) -> list[list[str]]:
    _, out = await casewire("dead-letters", "list")
    rows = rows_with(out, *ids)
    return rows if [r[0] for r in rows] == [ids[1], ids[0]] else []


@pytest.fixture
async def limited_queue(settings: Settings) -> AsyncIterator[str]:
    """A work queue of the run that dead-letters a message at its first return."""
    name = f"{settings.name_prefix}.limited-{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments={
            "x-queue-type": "quorum", "x-delivery-limit": 0,
            "x-dead-letter-exchange": f"{settings.name_prefix}.dead-letter"})
        try:
            yield name
        finally:
            await channel.queue_delete(name)


async def test_a_message_past_the_delivery_limit_shows_the_brokers_reason_and_goes_back(
        casewire: Run, settings: Settings, limited_queue: str, stack: Stack) -> None:
    poison = f"poison-{uuid.uuid4().hex}"
    body = poison.encode()
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(body, type="case.created", message_id=poison),
            routing_key=limited_queue)
        queue = await channel.get_queue(limited_queue)
        message = await until(lambda: queue.get(fail=False))
        await message.nack(requeue=True)  # its one delivery spent: the broker dead-letters it
        [row] = await listed(casewire, poison, args=("--reason", "delivery_limit"))
        assert row[2:5] == ["delivery_limit", limited_queue, "case.created"]
        code, out = await casewire("dead-letters", "requeue", "--queue", limited_queue)
        assert code == 0
        assert rows_with(out, poison)[0][1:] == [limited_queue, "requeued"]
        back = await until(lambda: queue.get(fail=False))
        assert back.body == body
        assert "x-death" not in (back.headers or {})
        await back.ack()
    _, out = await casewire("dead-letters", "list", "--queue", limited_queue)
    assert out.strip() == "no dead letters match"


async def test_requeue_needs_a_target_and_purge_a_confirmation() -> None:
    for argv, error in ((["requeue"], "needs an ID"), (["purge"], "add --yes"),
                        (["requeue", "x", "--all"], "not both")):
        code, out = await run_cli(cli_env(), "dead-letters", *argv)
        assert code == 2
        assert error in out


@pytest.fixture
async def old_dead_letter_queue(settings: Settings) -> AsyncIterator[broker_topology.Names]:
    """A prefix whose dead-letter queue was made before it had a length limit, holding two."""
    names = broker_topology.Names(f"{settings.name_prefix}-old-{uuid.uuid4().hex[:6]}")
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        dlx = await channel.declare_exchange(names.dead_letter, aio_pika.ExchangeType.TOPIC,
                                             durable=True)
        old = await channel.declare_queue(names.dead_letters, durable=True,
                                          arguments={"x-queue-type": "quorum"})
        await old.bind(dlx, routing_key="#")
        for i in range(2):
            await dlx.publish(aio_pika.Message(f"old {i}".encode()), routing_key="case.created")
    try:
        yield names
    finally:
        await delete_broker_objects(settings.model_copy(update={"name_prefix": names.prefix}))


async def test_an_older_dead_letter_queue_is_used_as_it_is_until_recreated_with_its_messages(
        settings: Settings, old_dead_letter_queue: broker_topology.Names) -> None:
    names = old_dead_letter_queue
    connection = await aio_pika.connect_robust(settings.amqp_url)
    async with connection:
        assert await broker_topology.dead_letters_as_declared(connection, names, 3) == {}
        code, out = await run_cli(cli_env(amqp_url=settings.amqp_url, name_prefix=names.prefix,
                                          dead_letter_max="3"),
                                  "queues", "--recreate-dead-letters")
        assert (code, "2 message(s) kept") == (0, out.split("; ")[1].split(".")[0])
        assert await broker_topology.dead_letters_as_declared(connection, names, 3) == (
            broker_topology.dead_letter_arguments(3))
        channel = await connection.channel()
        dlx = await channel.get_exchange(names.dead_letter)
        for i in range(2, 5):
            await dlx.publish(aio_pika.Message(f"new {i}".encode()), routing_key="case.created")
        queue = await channel.get_queue(names.dead_letters)
        # The newest three: the limit drops the oldest.
        kept = [(await queue.get(no_ack=True)).body for _ in range(3)]
        assert kept == [b"new 2", b"new 3", b"new 4"]
        assert await queue.get(fail=False) is None


async def test_status_shows_each_service_the_queues_and_the_outbox(
        casewire: Run, settings: Settings) -> None:
    code, out = await casewire("status")
    assert code == 0, out
    for service in ("ingest", "casestore", "dispatcher"):
        assert [line.split()[2] for line in out.splitlines()
                if line.split()[:1] == [service]] == ["yes"]
    for queue in ("casestore", "dispatcher", "dead-letters"):
        assert f"{settings.name_prefix}.{queue}" in out
    assert "waiting" in out
    assert "parked" in out


async def test_status_names_a_service_that_does_not_answer_and_fails(
        stack: Stack) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    code, out = await run_cli(stack_env(stack.settings, dispatcher_url=gone), "status")
    assert code == 1
    [line] = [line for line in out.splitlines() if line.startswith("dispatcher")]
    assert "unreachable" in line


async def test_automations_are_listed_disabled_and_enabled(
        casewire: Run, make_form: FormFactory, make_automation: AutomationFactory) -> None:
    hook = await make_form()
    automation = await make_automation(hook["form_id"], "http://127.0.0.1:9/hook")

    async def state() -> list[str]:
        _, out = await casewire("automations", "list", "--form", hook["form_id"])
        [row] = rows_with(out, automation["id"])
        return row

    assert (await state())[1:4] == [hook["form_id"], automation["name"], "enabled"]
    code, out = await casewire("automations", "disable", automation["id"])
    assert (code, out.split()[-1]) == (0, "CLI)")  # "disabled with the casewire CLI"
    assert "disabled" in (await state())[3]
    assert (await casewire("automations", "enable", automation["id"]))[0] == 0
    assert (await state())[3] == "enabled"
    _, everything = await casewire("automations", "list")
    assert automation["id"] in everything
    empty = await make_form()
    _, out = await casewire("automations", "list", "--form", empty["form_id"])
    assert out.strip() == f"no automations on form {empty['form_id']}"


async def test_commands_read_the_settings_of_the_last_run(run_env: dict[str, str]) -> None:
    """Run with one stack's settings; the bare commands afterwards look at that stack."""
    prefix = run_env["CASEWIRE_NAME_PREFIX"]
    async with casewire_run(run_env):
        assert ENV_FILE.stat().st_mode & 0o777 == 0o600
        code, out = await run_cli(cli_env(), "status")
        assert code == 0, out
        assert f"{prefix}.casestore" in out
        assert f"127.0.0.1:{run_env['CASEWIRE_CASESTORE_PORT']}" in out
        code, out = await run_cli(cli_env(), "queues")
        assert f"{prefix}.dispatcher" in out
        # The environment still wins over the file.
        other = isolated_settings("other").name_prefix
        _, out = await run_cli(cli_env(name_prefix=other), "queues")
        assert f"{other}.casestore" in out
        assert "not declared yet" in out


async def test_an_unreachable_broker_is_named_with_its_setting() -> None:
    code, out = await run_cli(cli_env(amqp_url="amqp://guest:guest@127.0.0.1:1/"),
                              "dead-letters", "list")
    assert code == 2
    assert "CASEWIRE_AMQP_URL" in out
