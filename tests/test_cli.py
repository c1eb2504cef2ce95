"""`casewire run` (what `make run` starts) and `casewire migrate`, as a newcomer would run them."""

import asyncio
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from services.casestore.migrate import drop_database, migrations
from tests.conftest import delete_broker_objects
from tests.stack import isolated_settings

CASEWIRE = [sys.executable, "-c", "from services.cli import main; main()"]


def cli_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEWIRE_")}
    return {**env, **{f"CASEWIRE_{k.upper()}": v for k, v in values.items()}}


@pytest.fixture
async def run_env() -> AsyncIterator[dict[str, str]]:
    settings = isolated_settings(f"cli{uuid.uuid4().hex[:8]}")
    env = cli_env(database_url=settings.database_url, name_prefix=settings.name_prefix,
                  admin_token=settings.admin_token, signing_key=settings.signing_key,
                  public_base_url=settings.public_base_url,
                  casestore_url=settings.casestore_url, ingest_port=str(settings.ingest_port),
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


async def test_run_starts_everything_prints_a_working_curl_and_stops_on_ctrl_c(
        run_env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(*CASEWIRE, "run", env=run_env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        banner = await read_until(proc.stdout, r"See it .*\n.*\n", within=60)
        url = re.search(r"--data '(.*)' \\\n\s+(\S+)", banner)
        assert url is not None, banner
        token = re.search(r"Admin token:\s+(\S+)", banner)
        assert token is not None
        assert token.group(1) == run_env["CASEWIRE_ADMIN_TOKEN"]
        async with aiohttp.ClientSession() as http:
            async with http.post(url.group(2), data=url.group(1),
                                 headers={"Content-type": "application/json"}) as resp:
                assert resp.status == 200
            cases_url = (f"http://127.0.0.1:{run_env['CASEWIRE_CASESTORE_PORT']}"
                         "/api/forms/demo/cases")
            headers = {"Authorization": f"Bearer {token.group(1)}"}
            for _ in range(100):
                async with http.get(cases_url, headers=headers) as resp:
                    cases = (await resp.json())["cases"]
                if cases:
                    break
                await asyncio.sleep(0.1)
        assert cases[0]["data"] == orjson.loads(url.group(1))
        assert cases[0]["creator"] == "Addon - Incoming Webhook"
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


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


async def test_migrate_is_idempotent(run_env: dict[str, str]) -> None:
    outputs = []
    for _ in range(2):
        proc = await asyncio.create_subprocess_exec(*CASEWIRE, "migrate", env=run_env,
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
        outputs.append(out.decode())
    shipped = len(migrations())
    assert f"{shipped} migration(s) applied" in outputs[0]
    assert "0 migration(s) applied" in outputs[1]
