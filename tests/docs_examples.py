"""The shell examples of README.md and docs/: found, and run as a reader would paste them.

A fenced block in `bash`, `sh`, `shell` or `console` is a shell example. It runs, in the order
of the pages (README.md, then docs/ in the order of the site's navigation) against a live
stack, unless the line before it says why it cannot: `<!-- not run: needs a Kubernetes
cluster -->`. Only what a reader would type in differs: the stack's ports for 8081/8082/8083,
real webhook URLs for `https://yourWebhookUrl`, a receiver of the test's for the example
receivers, and the ids the text tells the reader to take from an answer (`KEY`, `CASE`,
`AUTOMATION`, `DELIVERY`), taken from the answers. Every request must answer below 400.
"""

import asyncio
import base64
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from tests.helpers import until
from tests.stack import Stack

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
SHELL = ("bash", "sh", "shell", "console")
NOT_RUN = re.compile(r"^<!-- not run: (.+) -->$")
FENCE = re.compile(r"^```(\S*)")
# A shell command in an indented code block: nothing would run it, so it may not be there.
UNFENCED = re.compile(r"^ {4}(\$ )?(curl|casewire|make|export|kubectl|docker|python3?) ")
# Each request's status and body go to $OUT/log (the body also to stdout, for `$(curl ...)`),
# and the ids the text tells the reader to note from an answer are noted (TAKE_IDS).
PRELUDE = """set -euo pipefail
curl() {
  command curl -sS -o "$OUT/body" -w '%{http_code}' "$@" > "$OUT/status"
  printf '%s %s\\n' "$(cat "$OUT/status")" "$(base64 -w0 "$OUT/body")" >> "$OUT/log"
  eval "$(python3 -c "$TAKE_IDS" "$OUT/body")"
  cat "$OUT/body"
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
# The variables one block leaves for the next, exported or not.
CARRIED = ("API", "AUTH", "HOOK", "KEY", "CASE", "AUTOMATION", "DELIVERY")
KEEP_VARIABLES = "".join(f'printf "%s\\0" "{name}=${{{name}-}}" >> "$OUT/env"\n'
                         for name in CARRIED)
# What the CLI examples need to reach the test stack, as `casewire run` would leave it.
CLI_SETTINGS = ("database_url", "amqp_url", "name_prefix", "admin_token", "signing_key",
                "encryption_key", "casestore_url", "dispatcher_url", "public_base_url")


@dataclass(frozen=True)
class Block:
    page: str
    heading: str
    language: str
    text: str
    not_run: str | None = None

    @property
    def shell(self) -> bool:
        return self.language in SHELL


def pages() -> list[str]:
    """README.md, then the site's pages in the order of its navigation (any page under docs/
    left out of it last: the strict build fails on those anyway)."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = [f"docs/{p}" for entry in config["nav"] for p in entry.values()]
    rest = sorted(str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md"))
    return ["README.md", *listed, *(p for p in rest if p not in listed)]


def blocks(page: str) -> list[Block]:
    """Every fenced block of a page, with the heading it stands under and its not-run mark."""
    found: list[Block] = []
    lines = (ROOT / page).read_text().splitlines()
    heading, i = "", 0
    while i < len(lines):
        line = lines[i]
        opened = FENCE.match(line)
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif opened:
            end = lines.index("```", i + 1)
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            mark = NOT_RUN.match(before)
            found.append(Block(page, heading, opened.group(1), "\n".join(lines[i + 1:end]),
                               mark.group(1) if mark else None))
            i = end
        i += 1
    return found


def unfenced_commands(page: str) -> list[str]:
    """Shell commands in indented code blocks (outside fences) of a page."""
    found, fenced = [], False
    for line in (ROOT / page).read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and UNFENCED.match(line):
            found.append(line.strip())
    return found


def examples(page: str) -> list[Block]:
    return [b for b in blocks(page) if b.shell and b.not_run is None]


@dataclass
class Reader:
    """Runs the blocks one after another, as one reader in one terminal would."""

    stack: Stack
    cwd: Path
    hooks: dict[str, str]
    urls: dict[str, str]
    variables: dict[str, str] = field(default_factory=dict)
    answers: list[tuple[int, Any]] = field(default_factory=list)
    ran: list[Block] = field(default_factory=list)

    def text_of(self, block: Block) -> str:
        settings = self.stack.settings
        text = block.text
        for port, name in ((8081, "ingest_port"), (8082, "casestore_port"),
                           (8083, "dispatcher_port")):
            text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{getattr(settings, name)}")
        for placeholder, url in self.urls.items():
            text = text.replace(placeholder, url)
        hook = "auth_hook" if block.heading.startswith("Authenticated") else "hook"
        return text.replace("https://yourWebhookUrl", self.hooks[hook])

    def environment(self, out: Path) -> dict[str, str]:
        settings = self.stack.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASEWIRE_")}
        env |= {f"CASEWIRE_{name.upper()}": str(getattr(settings, name)) for name in CLI_SETTINGS}
        env["PATH"] = f"{self.cwd / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return {**env, **self.variables, "OUT": str(out), "TAKE_IDS": TAKE_IDS}

    async def run(self, block: Block) -> None:
        out = self.cwd / f"out-{uuid.uuid4().hex[:6]}"
        out.mkdir()
        (out / "log").touch()
        script = f"{PRELUDE}\n{self.text_of(block)}\n: > \"$OUT/env\"\n{KEEP_VARIABLES}"
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", script, cwd=self.cwd, env=self.environment(out),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
        where = f"{block.page} ({block.heading}):\n{block.text}"
        assert proc.returncode == 0, f"{where}\n->\n{output.decode()}"
        for line in (out / "log").read_text().splitlines():
            status, body = line.split(" ", 1)
            answer = base64.b64decode(body)
            assert int(status) < 400, f"{where}\n-> {status} {answer.decode()}"
            self.answers.append((int(status), orjson.loads(answer) if answer else None))
        kept = dict(item.split("=", 1) for item in
                    (out / "env").read_text().split("\0") if "=" in item)
        self.variables |= {k: v for k, v in kept.items() if v}
        self.ran.append(block)

    async def note_a_delivery(self, api: aiohttp.ClientSession) -> None:
        """DELIVERY: an id from the list, once the automation's first delivery finished."""
        async def finished() -> Any:
            async with api.get("/api/deliveries", params={
                    "automation": self.variables["AUTOMATION"],
                    "state": "succeeded,failed"}) as resp:
                return (await resp.json())["deliveries"]

        self.variables["DELIVERY"] = (await until(finished, within=20))[0]["id"]
