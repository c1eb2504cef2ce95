"""A service run as its own process, as in production: `python -m services.<name>` with the
settings in its environment, its output kept, and a kill -9 at hand."""

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import orjson

from shared.settings import Settings
from tests.helpers import until


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a service exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEWIRE_")}
    for name, value in settings.model_dump().items():
        text = orjson.dumps(value).decode() if isinstance(value, list) else str(value)
        env[f"CASEWIRE_{name.upper()}"] = text
    return env


@dataclass
class ServiceProcess:
    process: asyncio.subprocess.Process
    output: list[bytes] = field(default_factory=list)  # stdout and stderr lines, as written

    def kill(self) -> None:
        """kill -9: no clean-up of any kind, as a crash or an OOM kill."""
        self.process.send_signal(signal.SIGKILL)


async def _keep(stream: asyncio.StreamReader | None, into: list[bytes]) -> None:
    assert stream is not None
    while line := await stream.readline():
        into.append(line)


@contextlib.asynccontextmanager
async def service_process(settings: Settings, service: str) -> AsyncIterator[ServiceProcess]:
    """The service running in a process of its own until the block ends (SIGTERM, or kill
    if it was killed already); ready when the block begins."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"services.{service}", env=service_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    running = ServiceProcess(process)
    readers = [asyncio.create_task(_keep(s, running.output))
               for s in (process.stdout, process.stderr)]
    url = f"http://127.0.0.1:{getattr(settings, f'{service}_port')}/readyz"

    async def ready() -> bool:
        assert process.returncode is None, b"".join(running.output).decode()
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await until(ready, 60, f"{service} did not become ready")
        yield running
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            running.kill()  # a stop that hangs (a broker that does not answer) ends here
            await process.wait()
        await asyncio.gather(*readers)
