"""Every shell example of README.md and docs/ runs, page by page, against a live stack.

How blocks are found, marked and run: tests/docs_examples.py. The pages run in reading order
and share one reader's variables, so each test depends on the ones before it only as a reader
of the pages before would.
"""

import base64
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from services.cli.demo import DEMO_FORM, DEMO_RECEIVER
from tests.docs_examples import Reader, blocks, examples, pages, unfenced_commands
from tests.receiver import Receiver
from tests.stack import Stack, isolated_settings, running_stack

# The shell blocks that cannot run on a test stack, per page, each marked `<!-- not run: why -->`
# on the line before it. Marking one more is a change to this table.
NOT_RUN = {
    "README.md": 1,        # make run / make test
    "docs/deployment.md": 7,   # buildah and a registry, Docker Compose, Kubernetes
    "docs/performance.md": 1,  # make bench and its siblings: minutes each
    "docs/development.md": 1,  # make run / make test
}
# The smallest PNG, for the file upload example.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwAD"
                       "hgGAWjR9awAAAABJRU5ErkJggg==")
RUNNABLE = [page for page in pages() if examples(page)]


def test_every_shell_block_runs_or_says_why_not() -> None:
    marked = {page: n for page in pages()
              if (n := sum(1 for b in blocks(page) if b.shell and b.not_run))}
    assert marked == NOT_RUN
    # A page with shell blocks and no example that runs: only these, whose every block is marked.
    silent = {page for page in pages() if any(b.shell for b in blocks(page))} - set(RUNNABLE)
    assert silent == {"docs/deployment.md", "docs/performance.md", "docs/development.md"}
    for page in pages():
        assert unfenced_commands(page) == [], f"{page}: an unfenced shell example runs nowhere"
    # The pages whose examples run: a heading or fence changed by mistake shows here.
    assert {"README.md", "docs/incoming-webhooks.md", "docs/outgoing-webhooks.md",
            "docs/api.md", "docs/operations.md", "docs/accounts.md"} <= set(RUNNABLE)
    assert sum(len(examples(page)) for page in RUNNABLE) >= 17


@pytest.fixture(scope="module")
async def docs_stack() -> AsyncIterator[Stack]:
    async with running_stack(isolated_settings(f"docs{uuid.uuid4().hex[:6]}")) as running:
        yield running


async def _webhooks(api: aiohttp.ClientSession) -> dict[str, str]:
    """What the examples assume exists: the demo form of `make run` with its webhook, a form
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


@pytest.fixture(scope="module")
async def reader(docs_stack: Stack, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[Reader]:
    """One reader in the directory `make run` ran in: its admin token, its `.venv`, a photo."""
    settings = docs_stack.settings
    cwd = tmp_path_factory.mktemp("reader")
    (cwd / ".casewire").mkdir()
    (cwd / ".casewire" / "admin-token").write_text(settings.admin_token)
    (cwd / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    (cwd / "photo.png").write_bytes(PNG)
    headers = {"Authorization": f"Bearer {settings.admin_token}"}
    async with Receiver.running() as receiver, aiohttp.ClientSession(
            base_url=docs_stack.url("casestore"), headers=headers) as api:
        urls = {"https://crm.example.com/hook": receiver.endpoint(),
                "https://ops.example.com/casewire": receiver.endpoint(),
                "https://crm.example/hooks": receiver.endpoint(),
                DEMO_RECEIVER: receiver.endpoint()}
        yield Reader(docs_stack, cwd, await _webhooks(api), urls)


async def _read(page: str, reader: Reader, stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.settings.admin_token}"}
    async with aiohttp.ClientSession(base_url=stack.url("casestore"), headers=headers) as api:
        for block in examples(page):
            if "$DELIVERY" in block.text and "DELIVERY" not in reader.variables:
                await reader.note_a_delivery(api)
            await reader.run(block)
    assert [b for b in reader.ran if b.page == page] == examples(page)


@pytest.mark.parametrize("page", RUNNABLE)
async def test_the_shell_examples_of_each_page_work_in_order(
        page: str, reader: Reader, docs_stack: Stack) -> None:
    await _read(page, reader, docs_stack)


async def test_the_reader_took_every_id_the_pages_asked_for(
        reader: Reader, docs_stack: Stack) -> None:
    # Run alone (-k), it reads the pages itself.
    for page in RUNNABLE:
        if not any(b.page == page for b in reader.ran):
            await _read(page, reader, docs_stack)
    assert len(reader.answers) >= 18
    assert {"KEY", "CASE", "AUTOMATION", "DELIVERY"} <= set(reader.variables)
