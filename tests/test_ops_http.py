"""What every service answers outside its own routes: the JSON error shape for unknown routes
and methods, and readiness that waits for the database schema the code needs."""

import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from services.casestore.migrate import drop_database, migrate
from shared.schema import SchemaCheck, applied_version, expected_version
from tests.helpers import delete_broker_objects
from tests.stack import Stack, isolated_settings

SERVICES = ("casestore", "ingest", "dispatcher")


@pytest.mark.parametrize("service", SERVICES)
async def test_unknown_route_answers_the_json_error_shape(
        stack: Stack, http: aiohttp.ClientSession, service: str) -> None:
    headers = {"Authorization": f"Bearer {stack.settings.admin_token}"}
    for path in ("/no-such-route", "/api/no-such-route", "/hooks"):
        async with http.get(stack.url(service) + path, headers=headers) as resp:
            assert resp.status == 404, path
            assert resp.content_type == "application/json"
            body = await resp.json()
        assert body == {"errors": [{"field": None, "code": "not_found",
                                    "message": "not found"}]}


@pytest.mark.parametrize("service", SERVICES)
async def test_wrong_method_answers_the_json_error_shape_with_allow(
        stack: Stack, http: aiohttp.ClientSession, service: str) -> None:
    async with http.delete(stack.url(service) + "/healthz") as resp:
        assert resp.status == 405
        assert resp.content_type == "application/json"
        assert "GET" in resp.headers["Allow"]
        assert (await resp.json())["errors"][0]["code"] == "method_not_allowed"


@pytest.mark.parametrize("service", SERVICES)
async def test_readiness_includes_the_schema(stack: Stack, http: aiohttp.ClientSession,
                                             service: str) -> None:
    async with http.get(stack.url(service) + "/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["checks"]["schema"] is True


@pytest.fixture
async def old_schema_stack() -> AsyncIterator[Stack]:
    """A stack of its own whose database lacks the newest migration's record."""
    settings = isolated_settings(f"old{uuid.uuid4().hex[:8]}")
    await migrate(settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("DELETE FROM schema_migrations WHERE version = $1",
                           expected_version())
    finally:
        await conn.close()
    old = Stack(settings)
    try:
        await old.start_all()
        yield old
    finally:
        await old.stop_all()
        await delete_broker_objects(settings)
        await drop_database(settings.database_url)


async def test_services_refuse_readiness_while_the_schema_is_older_than_the_code(
        old_schema_stack: Stack, http: aiohttp.ClientSession) -> None:
    for service in SERVICES:
        async with http.get(old_schema_stack.url(service) + "/readyz") as resp:
            assert resp.status == 503, service
            assert (await resp.json())["checks"]["schema"] is False, service
    # The migration Job records the newest migration (its SQL ran already in this database).
    conn = await asyncpg.connect(old_schema_stack.settings.database_url)
    try:
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, 'newest')",
                           expected_version())
    finally:
        await conn.close()
    for service in SERVICES:
        async with http.get(old_schema_stack.url(service) + "/readyz") as resp:
            assert resp.status == 200, service


async def test_schema_check_compares_applied_and_shipped_versions(stack: Stack) -> None:
    pool = await asyncpg.create_pool(stack.settings.database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            assert await applied_version(conn) == expected_version()
        assert await SchemaCheck().check(pool) is True
    finally:
        await pool.close()
