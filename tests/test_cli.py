"""`casewire run` (what `make run` starts) and `casewire migrate`, as a newcomer would run them."""

import asyncio
import contextlib
import os
import re
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.casestore.migrate import drop_database, migrations
from services.cli.deliveries import when
from services.cli.demo import DEMO_RECEIVER
from tests.helpers import (
    CASEWIRE,
    AutomationFactory,
    FormFactory,
    cli_env,
    delete_broker_objects,
    until,
    webhook_action,
)
from tests.receiver import Receiver, Reply
from tests.stack import Stack, isolated_settings


@pytest.fixture(autouse=True)
def own_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's commands in a directory of their own: `casewire run` writes .casewire/ where
    it runs, and the other commands read the settings there."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def run_env() -> AsyncIterator[dict[str, str]]:
    settings = isolated_settings(f"cli{uuid.uuid4().hex[:8]}")
    env = cli_env(database_url=settings.database_url, name_prefix=settings.name_prefix,
                  admin_token=settings.admin_token, signing_key=settings.signing_key,
                  encryption_key=settings.encryption_key,
                  public_base_url=settings.public_base_url,
                  casestore_url=settings.casestore_url, dispatcher_url=settings.dispatcher_url,
                  ingest_port=str(settings.ingest_port),
                  casestore_port=str(settings.casestore_port),
                  dispatcher_port=str(settings.dispatcher_port))
    try:
        yield env
    finally:
        await delete_broker_objects(settings)
        await drop_database(settings.database_url)


async def read_until(stream: asyncio.StreamReader, pattern: str, within: float) -> str:
    seen = ""
    async with asyncio.timeout(within):
        while not re.search(pattern, seen):
            line = await stream.readline()
            if not line:
                raise AssertionError(f"output ended before {pattern!r}:\n{seen}")
            seen += line.decode()
    return seen


@contextlib.asynccontextmanager
async def casewire_run(env: dict[str, str]
                       ) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`casewire run` until its banner is out; Ctrl-C afterwards must end it cleanly (exit 0)."""
    proc = await asyncio.create_subprocess_exec(*CASEWIRE, "run", env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        yield proc, await read_until(proc.stdout, r"Its deliveries.*\n.*\n", within=60)
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_run_starts_everything_and_its_printed_curl_lines_work(
        run_env: dict[str, str], receiver: Receiver) -> None:
    """The banner's lines, run as printed: add the demo automation, create a case, see both."""
    async with casewire_run(run_env) as (_, banner):
        token = re.search(r"Admin token:\s+(\S+)", banner)
        assert token is not None
        assert token.group(1) == run_env["CASEWIRE_ADMIN_TOKEN"]
        create, add_automation = [
            (m.group(1), m.group(2))
            for m in re.finditer(r"--data '(.*)' \\\n\s+(\S+)", banner)]
        target = receiver.endpoint()
        headers = {"Authorization": f"Bearer {token.group(1)}",
                   "Content-type": "application/json"}
        async with aiohttp.ClientSession(headers=headers) as http:
            body = add_automation[0].replace(DEMO_RECEIVER, target)
            async with http.post(add_automation[1], data=body) as resp:
                assert resp.status == 201, await resp.text()
            async with http.post(create[1], data=create[0]) as resp:
                assert resp.status == 200
            cases_url = (f"http://127.0.0.1:{run_env['CASEWIRE_CASESTORE_PORT']}"
                         "/api/forms/demo/cases")

            async def listed() -> list[dict[str, Any]]:
                async with http.get(cases_url) as resp:
                    found: list[dict[str, Any]] = (await resp.json())["cases"]
                return found

            cases = await until(listed)
        assert cases[0]["data"] == orjson.loads(create[0])
        assert cases[0]["creator"] == "Addon - Incoming Webhook"
        [sent] = await receiver.wait_for(target, 1)
        assert sent.json() == {"caseNumber": cases[0]["case_number"],
                               "text": cases[0]["data"]["text-field"]}


def children_running(parent: int, module: str) -> list[int]:
    """Pids of `parent`'s child processes running `python -m <module>`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and module.encode() in argv:
            found.append(int(entry))
    return found


async def test_run_with_two_ingest_workers_serves_the_webhook_from_both(
        run_env: dict[str, str]) -> None:
    async with casewire_run({**run_env, "CASEWIRE_INGEST_WORKERS": "2"}) as (proc, banner):
        assert len(children_running(proc.pid, "services.ingest")) == 2
        url = re.search(r"incoming webhook URL:\s+(\S+)", banner)
        assert url is not None
        # A new connection each time, so the kernel spreads them over both processes.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for i in range(40):
                async with http.post(url.group(1), json={"text-field": f"worker {i}"}) as resp:
                    assert resp.status == 200, await resp.text()
        api = f"http://127.0.0.1:{run_env['CASEWIRE_CASESTORE_PORT']}/api/forms/demo/cases"
        headers = {"Authorization": f"Bearer {run_env['CASEWIRE_ADMIN_TOKEN']}"}
        async with aiohttp.ClientSession(headers=headers) as http:

            async def at_least_40() -> int:
                async with http.get(api) as resp:
                    total = int((await resp.json())["total"])
                return total if total >= 40 else 0

            assert await until(at_least_40) == 40
        # Whichever process answers a scrape, it reports both (prometheus-client's
        # multiprocess mode): every one of them sees all 40 cases.
        metrics = f"http://127.0.0.1:{run_env['CASEWIRE_INGEST_PORT']}/metrics"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for _ in range(6):
                async with http.get(metrics) as resp:
                    assert accepted(await resp.text()) == 40


def accepted(exposition: str) -> float:
    return sum(s.value for family in text_string_to_metric_families(exposition)
               for s in family.samples
               if s.name == "casewire_ingest_cases_total" and s.labels["outcome"] == "accepted")


@pytest.mark.parametrize(("setting", "value", "sentence"), [
    ("database_url", "postgresql://postgres@127.0.0.1:1/casewire", "Cannot reach Postgres"),
    ("amqp_url", "amqp://guest:guest@127.0.0.1:1/", "Cannot reach RabbitMQ"),
])
async def test_run_names_the_unreachable_dependency_and_its_setting(
        run_env: dict[str, str], setting: str, value: str, sentence: str) -> None:
    env = {**run_env, f"CASEWIRE_{setting.upper()}": value}
    proc = await asyncio.create_subprocess_exec(*CASEWIRE, "run", env=env,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert sentence in err.decode()
    assert f"CASEWIRE_{setting.upper()}" in err.decode()


async def test_migrate_is_idempotent_and_logs_json_lines(run_env: dict[str, str]) -> None:
    outputs = []
    for _ in range(2):
        proc = await asyncio.create_subprocess_exec(*CASEWIRE, "migrate", env=run_env,
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
        # Like the services: one JSON object per line, each naming its service.
        lines = [orjson.loads(line) for line in out.decode().splitlines()]
        assert lines
        assert all(line["service"] == "migrate" for line in lines)
        outputs.append(lines)
    shipped = migrations()
    first, second = outputs
    assert [line["migration"] for line in first if line["event"] == "migration_applied"] == \
        [name for _, name, _ in shipped]
    assert first[-1]["event"] == second[-1]["event"] == "database_up_to_date"
    assert (first[-1]["applied"], second[-1]["applied"]) == (len(shipped), 0)
    assert first[-1]["schema_version"] == shipped[-1][0]


Casewire = Callable[..., Awaitable[str]]


@pytest.fixture
def casewire(stack: Stack) -> Casewire:
    """`casewire ARGS...` against the test stack's casestore; its output (it must exit 0)."""
    env = cli_env(casestore_url=stack.settings.casestore_url,
                  admin_token=stack.settings.admin_token)

    async def run(*argv: str) -> str:
        proc = await asyncio.create_subprocess_exec(*CASEWIRE, *argv, env=env,
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out
        return out.decode()

    return run


async def test_deliveries_and_replay_from_the_command_line(
        casewire: Casewire, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=500), Reply())
    automation = await make_automation(hook["form_id"], url)
    async with api.post(f"/api/forms/{hook['form_id']}/cases",
                        json={"data": {"text-field": "x"}}) as resp:
        assert resp.status == 201
    listing = await until(lambda: casewire("deliveries", "--automation", automation["id"]))
    [line] = listing.splitlines()
    delivery_id, state = line.split()[:2]
    assert (state, "last=500") == ("failed", line.split()[3])
    assert "replay requested" in await casewire("replay", delivery_id)
    await receiver.wait_for(url, 2)

    async def succeeded() -> str | None:
        detail = await casewire("deliveries", "--id", delivery_id)
        return detail if "succeeded" in detail.splitlines()[0] else None

    detail = await until(succeeded)
    assert [line.split("-> ")[1].split()[0] for line in detail.splitlines()[1:]] == ["500", "200"]


def test_replay_windows_are_durations_ago_or_iso_times() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert when("30m", now) == "2026-12-01T11:30:00+00:00"
    assert when("2h", now) == "2026-12-01T10:00:00+00:00"
    assert when("1d", now) == "2026-11-30T12:00:00+00:00"
    assert when("2026-12-01T08:00:00Z") == "2026-12-01T08:00:00+00:00"
    assert when("2026-12-01T08:00:00") == "2026-12-01T08:00:00+00:00"  # UTC, as the API
    assert when("2026-12-01T08:00:00+01:00") == "2026-12-01T08:00:00+01:00"


async def test_a_bulk_replay_needs_a_window_and_names_one_target() -> None:
    for argv, error in ((["--automation", str(uuid.uuid4())], "needs --since"),
                        ([str(uuid.uuid4()), "--since", "2h"], "go with --automation"),
                        (["--automation", str(uuid.uuid4()), "--since", "3w"], "30m, 2h, 1d")):
        proc = await asyncio.create_subprocess_exec(*CASEWIRE, "replay", *argv, env=cli_env(),
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2
        assert error in err.decode()


async def test_an_automations_failed_deliveries_are_replayed_by_time_window(
        casewire: Casewire, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=500), Reply(status=500), Reply())
    automation = await make_automation(hook["form_id"], url)
    for text in ("one", "two"):
        async with api.post(f"/api/forms/{hook['form_id']}/cases",
                            json={"data": {"text-field": text}}) as resp:
            assert resp.status == 201
    await receiver.wait_for(url, 2)
    listing = await casewire("deliveries", "--automation", automation["id"], "--state", "failed")
    for _ in range(100):
        if len(listing.splitlines()) == 2:
            break
        await asyncio.sleep(0.1)
        listing = await casewire("deliveries", "--automation", automation["id"],
                                 "--state", "failed")
    assert len(listing.splitlines()) == 2
    assert await casewire("deliveries", "--automation", automation["id"], "--until", "1h") == ""
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    shown = await casewire("deliveries", "--automation", automation["id"], "--since", an_hour_ago)
    assert len(shown.splitlines()) == 2
    target = ("replay", "--automation", automation["id"])
    assert (await casewire(*target, "--since", "2h", "--until", "1h")).startswith("0 deliveries")
    assert (await casewire(*target, "--since", "1h", "--state", "succeeded")).startswith(
        "0 deliveries")
    assert (await casewire(*target, "--since", "1h", "--state", "failed")) == (
        f"2 deliveries of automation {automation['id']} replayed\n")
    await receiver.wait_for(url, 4)
    for _ in range(100):
        done = await casewire("deliveries", "--automation", automation["id"],
                              "--state", "succeeded")
        if len(done.splitlines()) == 2:
            break
        await asyncio.sleep(0.1)
    assert [line.split()[2] for line in done.splitlines()] == ["attempts=2/2"] * 2


async def test_a_waiting_delivery_shows_its_state_and_next_attempt(
        casewire: Casewire, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=503, headers={"Retry-After": "30"}), Reply())
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, attempts=2))
    async with api.post(f"/api/forms/{hook['form_id']}/cases",
                        json={"data": {"text-field": "x"}}) as resp:
        assert resp.status == 201
    for _ in range(100):
        listing = await casewire("deliveries", "--automation", automation["id"],
                                 "--state", "pending,sending,retrying")
        if "retrying" in listing:
            break
        await asyncio.sleep(0.1)
    [line] = listing.splitlines()
    assert line.split()[1:3] == ["retrying", "attempts=1/2"]
    due = datetime.fromisoformat(line.split("next=")[1].strip())
    assert timedelta(seconds=20) < due - datetime.now(UTC) <= timedelta(seconds=30)
    async with api.delete(f"/api/automations/{automation['id']}") as resp:
        assert resp.status == 200
