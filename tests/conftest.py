"""Fixtures: one isolated Casewire stack per test session, and helpers that clean up after it."""

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.casestore.actors import Role
from shared.logging import configure_logging
from shared.settings import Settings
from tests.helpers import (
    AutomationFactory,
    EventTap,
    FormFactory,
    call,
    sample_form,
    tap_events,
    unique,
    webhook_action,
)
from tests.receiver import Receiver
from tests.scheduling import PlayedDispatcher, playing
from tests.stack import Stack, isolated_settings, running_stack

RUN_ID = uuid.uuid4().hex[:10]
# Makes a client calling the API with a fresh account's token, of the given role.
RoleClients = Callable[[Role], Awaitable[aiohttp.ClientSession]]
@pytest.fixture(scope="session")
def settings() -> Settings:
    configure_logging("tests", "WARNING", json=False)
    return isolated_settings(RUN_ID)


@pytest.fixture(scope="session")
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    async with running_stack(settings) as running:
        yield running


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the run's database, to look at rows as Postgres holds them."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def api(stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    """The admin API with the bearer token set."""
    headers = {"Authorization": f"Bearer {stack.settings.admin_token}"}
    async with aiohttp.ClientSession(base_url=stack.url("casestore"), headers=headers) as session:
        yield session


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client, as an external system would use."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=300), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        yield session


@pytest.fixture
async def make_form(api: aiohttp.ClientSession) -> FormFactory:
    """Create a fresh form (unique id) with its incoming webhook; returns the webhook JSON."""

    async def factory(authenticate_user: bool = False, **overrides: Any) -> dict[str, Any]:
        form_id = f"f-{uuid.uuid4().hex[:12]}"
        body = {**sample_form(form_id), **overrides, "id": form_id}
        async with api.post("/api/forms", json=body) as resp:
            assert resp.status == 201, await resp.text()
        async with api.put(f"/api/forms/{form_id}/incoming-webhook",
                           json={"enabled": True, "authenticate_user": authenticate_user}) as resp:
            assert resp.status == 200, await resp.text()
            hook: dict[str, Any] = await resp.json()
        return {**hook, "form_id": form_id}

    return factory


@pytest.fixture
async def events(settings: Settings, stack: Stack) -> AsyncIterator[EventTap]:
    async with tap_events(settings) as tap:
        yield tap


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    """The external system outgoing webhooks call; each test takes fresh URLs from it."""
    async with Receiver.running() as running:
        yield running


@pytest.fixture
async def make_automation(api: aiohttp.ClientSession) -> AutomationFactory:
    """Create an automation on a form; fields default to 'on case_created, send to `url`'."""

    async def factory(form_id: str, url: str, **overrides: Any) -> dict[str, Any]:
        body = {"name": f"auto-{uuid.uuid4().hex[:6]}", "when": [{"event": "case_created"}],
                "action": webhook_action(url), **overrides}
        async with api.post(f"/api/forms/{form_id}/automations", json=body) as resp:
            assert resp.status == 201, await resp.text()
            created: dict[str, Any] = await resp.json()
        return created

    return factory


@pytest.fixture
async def played(settings: Settings, stack: Stack) -> AsyncIterator[PlayedDispatcher]:
    """The test plays the dispatcher (tests/scheduling.py)."""
    async with contextlib.asynccontextmanager(playing)(settings, stack) as dispatcher:
        yield dispatcher


@pytest.fixture
async def as_role(api: aiohttp.ClientSession, stack: Stack) -> AsyncIterator[RoleClients]:
    """A client calling the API with a fresh account's token, of the given role."""
    sessions: list[aiohttp.ClientSession] = []

    async def make(role: Role) -> aiohttp.ClientSession:
        username = unique(role)
        await call(api, "POST", "/api/accounts", 201, {"username": username, "role": role})
        made = await call(api, "POST", f"/api/accounts/{username}/tokens", 201, {"name": "t"})
        session = aiohttp.ClientSession(base_url=stack.url("casestore"), headers={
            "Authorization": f"Bearer {made['token']}"})
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()
