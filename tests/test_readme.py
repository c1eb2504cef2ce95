"""The README's examples work: its shell blocks run, in order, against a live stack.

Every code block with a `curl` (or the `export` of API and AUTH) under Incoming webhooks,
Outgoing webhooks and Admin API runs in bash, as a reader would paste it, with the variables
the README defines. Only what a reader would type in differs: the stack's ports for 8081/8082,
a real webhook URL for `https://yourWebhookUrl`, a receiver of ours for the CRM example URLs,
and the ids the README asks the reader to take from an answer (`KEY`, `CASE`, `AUTOMATION`,
`DELIVERY`), taken from the answers. Every request must answer below 400.
"""

import asyncio
import base64
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from services.cli import DEMO_FORM, _banner
from shared.settings import Settings
from tests.helpers import until
from tests.receiver import Receiver
from tests.stack import Stack, isolated_settings, running_stack

README = Path(__file__).parent.parent / "README.md"
RUN = ("Incoming webhooks", "Outgoing webhooks", "Admin API")
# Each request's status and body go to $OUT/log, and the ids the README tells the reader to
# note from an answer are noted (TAKE_IDS); the variables a block leaves go to $OUT/env.
PRELUDE = """set -euo pipefail
curl() {
  command curl -sS -o "$OUT/body" -w '%{http_code}' "$@" > "$OUT/status"
  printf '%s %s\\n' "$(cat "$OUT/status")" "$(base64 -w0 "$OUT/body")" >> "$OUT/log"
  eval "$(python3 -c "$TAKE_IDS" "$OUT/body")"
}
"""
TAKE_IDS = """
import json, shlex, sys
try:
    answer = json.load(open(sys.argv[1]))
except ValueError:
    answer = None
if isinstance(answer, dict):
    name = ("KEY" if "auth_key" in answer else "AUTOMATION" if "secret" in answer
            else "CASE" if "case_number" in answer else None)
    value = answer.get("auth_key") or answer.get("id")
    if name and value:
        print(f"export {name}={shlex.quote(value)}")
"""
CARRIED = ("API", "AUTH", "KEY", "CASE", "AUTOMATION", "DELIVERY")
# The smallest PNG, for the file upload example.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwAD"
                       "hgGAWjR9awAAAABJRU5ErkJggg==")


@dataclass
class Block:
    section: str
    subsection: str
    text: str


def blocks(markdown: str) -> list[Block]:
    """Indented and ```bash blocks, with the headings they stand under."""
    found, section, subsection = [], "", ""
    lines, i = markdown.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section, subsection = line[3:].strip(), ""
        elif line.startswith("### "):
            subsection = line[4:].strip()
        if line.startswith("```bash"):
            end = lines.index("```", i + 1)
            found.append(Block(section, subsection, "\n".join(lines[i + 1:end])))
            i = end
        elif line.startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            text = "\n".join(line[4:] for line in lines[i:end]).strip()
            found.append(Block(section, subsection, text))
            i = end - 1
        i += 1
    return found


def shell_examples() -> list[Block]:
    return [b for b in blocks(README.read_text()) if b.section in RUN
            and (b.text.startswith(("curl ", "export ")) or "\ncurl " in b.text)]


@dataclass
class Reader:
    """Runs the blocks one after another, as one reader in one terminal would."""

    stack: Stack
    cwd: Path
    hooks: dict[str, str]
    urls: dict[str, str]
    variables: dict[str, str] = field(default_factory=dict)
    answers: list[tuple[int, Any]] = field(default_factory=list)

    def text_of(self, block: Block) -> str:
        settings = self.stack.settings
        text = block.text.replace("127.0.0.1:8082", f"127.0.0.1:{settings.casestore_port}")
        text = text.replace("127.0.0.1:8081", f"127.0.0.1:{settings.ingest_port}")
        for placeholder, url in self.urls.items():
            text = text.replace(placeholder, url)
        hook = "auth_hook" if block.subsection.startswith("Authenticated") else "hook"
        return text.replace("https://yourWebhookUrl", self.hooks[hook])

    async def run(self, block: Block) -> None:
        out = self.cwd / f"out-{uuid.uuid4().hex[:6]}"
        out.mkdir()
        (out / "log").touch()
        script = f'{PRELUDE}\n{self.text_of(block)}\nenv -0 > "$OUT/env"\n'
        env = {**os.environ, **self.variables, "OUT": str(out), "TAKE_IDS": TAKE_IDS}
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", script, cwd=self.cwd, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, f"{block.text}\n->\n{output.decode()}"
        for line in (out / "log").read_text().splitlines():
            status, body = line.split(" ", 1)
            answer = base64.b64decode(body)
            assert int(status) < 400, f"{block.text}\n-> {status} {answer.decode()}"
            self.answers.append((int(status), orjson.loads(answer) if answer else None))
        exported = dict(item.split("=", 1) for item in
                        (out / "env").read_text().split("\0") if "=" in item)
        self.variables |= {k: exported[k] for k in CARRIED if k in exported}

    async def note_a_delivery(self, api: aiohttp.ClientSession) -> None:
        """DELIVERY: an id from the list, once the automation's first delivery finished."""
        async def finished() -> Any:
            async with api.get("/api/deliveries", params={
                    "automation": self.variables["AUTOMATION"],
                    "state": "succeeded,failed"}) as resp:
                return (await resp.json())["deliveries"]

        self.variables["DELIVERY"] = (await until(finished, within=20))[0]["id"]


@pytest.fixture(scope="module")
async def readme_stack() -> AsyncIterator[Stack]:
    async with running_stack(isolated_settings(f"readme{uuid.uuid4().hex[:6]}")) as running:
        yield running


async def _webhooks(api: aiohttp.ClientSession) -> dict[str, str]:
    """What the incoming-webhook examples assume exists: the demo form of `make run`, a form
    whose webhook authenticates users, and the user `Username` allowed on it."""
    async with api.post("/api/forms", json=DEMO_FORM) as resp:
        assert resp.status == 201
    async with api.put("/api/forms/demo/incoming-webhook", json={}) as resp:
        hook = (await resp.json())["url"]
    auth_form = {**DEMO_FORM, "id": "demo-auth"}
    async with api.post("/api/forms", json=auth_form) as resp:
        assert resp.status == 201
    async with api.put("/api/forms/demo-auth/incoming-webhook",
                       json={"authenticate_user": True}) as resp:
        auth_hook = (await resp.json())["url"]
    async with api.post("/api/users", json={"username": "Username", "password": "Password",
                                            "forms": ["demo-auth"]}) as resp:
        assert resp.status == 201
    return {"hook": hook, "auth_hook": auth_hook}


async def test_the_readme_shell_examples_work_in_order(
        readme_stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    settings = readme_stack.settings
    (tmp_path / ".casewire").mkdir()
    (tmp_path / ".casewire" / "admin-token").write_text(settings.admin_token)
    (tmp_path / "photo.png").write_bytes(PNG)
    headers = {"Authorization": f"Bearer {settings.admin_token}"}
    async with aiohttp.ClientSession(base_url=readme_stack.url("casestore"),
                                     headers=headers) as api:
        urls = {"https://crm.example.com/hook": receiver.endpoint(),
                "https://crm.example/hooks": receiver.endpoint()}
        reader = Reader(readme_stack, tmp_path, await _webhooks(api), urls)
        examples = shell_examples()
        for block in examples:
            if "$DELIVERY" in block.text and "DELIVERY" not in reader.variables:
                await reader.note_a_delivery(api)
            await reader.run(block)
    assert len(examples) >= 12
    assert len(reader.answers) >= 18
    assert {"KEY", "CASE", "AUTOMATION", "DELIVERY"} <= set(reader.variables)


def test_the_quick_start_banner_is_what_casewire_run_prints() -> None:
    [sample] = [b.text for b in blocks(README.read_text())
                if b.text.startswith("Casewire is running")]
    token = re.search(r"Admin token:\s+(\S+)", sample)
    url = re.search(r"incoming webhook URL:\s+(\S+)", sample)
    assert token is not None
    assert url is not None
    printed = _banner(Settings(), token.group(1), url.group(1))
    assert sample == printed.strip("\n")
