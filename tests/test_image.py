"""The image `make image` builds runs Casewire as the Kubernetes manifests do: `casewire migrate`
and the three services from the image, as user 10001 on a read-only root (a tmpfs on /tmp),
against the real Postgres and RabbitMQ, carry a case from an incoming webhook to a receiver.

The build is buildah's (bench/topology/image.py): about a minute on a fresh machine (an
mmdebstrap base when no registry serves python:3.11-slim), seconds once its layers are cached.
"""

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from bench.topology.image import ImageRoot, build
from services.casestore.migrate import drop_database
from shared import broker_topology
from shared.settings import Settings
from tests.helpers import call, sample_form, webhook_action
from tests.receiver import Receiver
from tests.stack import isolated_settings

SERVICES = ("casestore", "ingest", "dispatcher")


@pytest.fixture(scope="module")
def image() -> Iterator[ImageRoot]:
    build()
    root = ImageRoot()
    try:
        yield root
    finally:
        root.close()


def env_of(settings: Settings) -> dict[str, str]:
    """The settings as the CASEWIRE_* variables a pod gets."""
    values = settings.model_dump(mode="json")
    return {f"CASEWIRE_{name.upper()}": value if isinstance(value, str)
            else orjson.dumps(value).decode() for name, value in values.items()}


@contextlib.asynccontextmanager
async def services_from(image: ImageRoot, settings: Settings,
                        logs: Path) -> AsyncIterator[dict[str, subprocess.Popen[bytes]]]:
    env = {**env_of(settings), "CASEWIRE_HOST": "127.0.0.1"}
    running: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for service in SERVICES:
            running[service] = start(image, service, env, logs / f"{service}.log")
        yield running
    finally:
        for process in running.values():
            process.terminate()
        for process in running.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def start(image: ImageRoot, service: str, env: dict[str, str],
          log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(image.argv(["python", "-m", f"services.{service}"], env),
                                stdout=out, stderr=subprocess.STDOUT)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            assert process.poll() is None, tail(log)
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError(f"not ready: {tail(log)}")


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


@pytest.mark.timeout(600)  # the first test of the module builds the image (a minute, fresh)
def test_root_is_read_only_and_the_user_is_not_root(image: ImageRoot) -> None:
    probe = ("import os; open('/tmp/ok', 'w').write('x'); print(os.getuid(), os.getgid());"
             "open('/opt/venv/written', 'w')")
    result = image.run(["python", "-c", probe], {})
    assert result.stdout.split() == ["10001", "10001"]
    assert "Read-only file system" in result.stderr


@pytest.mark.timeout(600)
async def test_migrate_and_the_services_from_the_image_deliver_a_case(
        image: ImageRoot, tmp_path: Path) -> None:
    settings = isolated_settings(f"image{uuid.uuid4().hex[:8]}")
    migrated = image.run(["casewire", "migrate"], env_of(settings))
    try:
        assert migrated.returncode == 0, migrated.stderr + migrated.stdout
        assert "database_up_to_date" in migrated.stdout + migrated.stderr
        async with Receiver.running() as receiver, \
                services_from(image, settings, tmp_path) as running:
            for service, process in running.items():
                url = f"http://127.0.0.1:{getattr(settings, f'{service}_port')}"
                await wait_ready(url, process, tmp_path / f"{service}.log")
                assert uid_of(process.pid) == 10001
            url = await deliver_one_case(settings, receiver)
            [sent] = await receiver.wait_for(url, 1, within=30)
            assert sent.json()["text"] == "from the image"
    finally:
        await broker_topology.delete_topology(settings.amqp_url, settings.name_prefix)
        await drop_database(settings.database_url)


async def deliver_one_case(settings: Settings, receiver: Receiver) -> str:
    """A form whose automation calls the receiver, and one case through its webhook."""
    form_id = f"img-{uuid.uuid4().hex[:8]}"
    url = receiver.endpoint()
    headers = {"Authorization": f"Bearer {settings.admin_token}"}
    async with aiohttp.ClientSession(base_url=settings.casestore_url, headers=headers) as api:
        await call(api, "POST", "/api/forms", 201, sample_form(form_id))
        hook = await call(api, "PUT", f"/api/forms/{form_id}/incoming-webhook", 200,
                          {"enabled": True, "authenticate_user": False})
        await call(api, "POST", f"/api/forms/{form_id}/automations", 201,
                   {"name": "to the receiver", "when": [{"event": "case_created"}],
                    "action": webhook_action(url)})
    async with aiohttp.ClientSession() as http:
        for _ in range(100):  # ingest learns of a new webhook within a moment
            async with http.post(hook["url"], json={"text-field": "from the image"}) as resp:
                if resp.status == 200:
                    return url
            await asyncio.sleep(0.1)
    raise AssertionError("ingest never accepted the case")
