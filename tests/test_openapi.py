"""The OpenAPI description: complete, served without a token, browsable offline, and true.

Schemathesis generates requests for every operation from the description the running stack
serves and checks every answer: no 5xx, and no status, content type or body that contradicts
the description. It runs against a stack of its own (its random writes stay there), in a
thread, since its HTTP client blocks and the stack runs on this test's event loop.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.casestore.api.docs import served
from services.casestore.app import create_app
from shared.openapi import PATH_PARAM, undocumented
from shared.settings import Settings
from tests.hostile import one_of_everything
from tests.receiver import Receiver
from tests.stack import Stack, isolated_settings, running_stack

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# Examples per operation, and the whole run's bound: `make test` stays quick.
MAX_EXAMPLES = 8
WITHIN_SECONDS = 240


@pytest.fixture(scope="module")
async def own_stack() -> AsyncIterator[Stack]:
    async with running_stack(isolated_settings(f"oas{uuid.uuid4().hex[:8]}")) as running:
        yield running


async def description(stack: Stack) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, \
            http.get(stack.url("casestore") + "/api/openapi.json") as resp:
        assert resp.status == 200
        document: dict[str, Any] = await resp.json()
    return document


def test_every_api_route_is_described(settings: Settings) -> None:
    app = create_app(settings)
    public = [r for r in served(app, settings)
              if r.path.startswith(("/api/", "/files/", "/hooks/", "/return/"))
              and r.method != "HEAD" and not r.path.startswith(("/api/openapi", "/api/docs"))]
    assert len(public) > 30
    assert undocumented(public) == []


async def test_the_description_is_served_without_a_token(own_stack: Stack) -> None:
    document = await description(own_stack)
    assert document["openapi"] == "3.1.0"
    hook = document["paths"]["/hooks/{token}"]
    assert hook["servers"] == [{"url": own_stack.settings.public_base_url}]
    assert hook["post"]["security"] == []
    assert document["paths"]["/api/forms"]["post"]["requestBody"]["content"][
        "application/json"]["schema"] == {"$ref": "#/components/schemas/FormDefinition"}
    schemathesis.openapi.from_dict(document)  # a valid OpenAPI document


async def test_the_docs_page_loads_swagger_ui_from_the_package(own_stack: Stack) -> None:
    base = own_stack.url("casestore")
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/api/docs") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            page = await resp.text()
        assert "http" not in page  # nothing from another host
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            async with http.get(f"{base}/api/docs/assets/{asset}") as resp:
                assert resp.status == 200, asset
                assert len(await resp.read()) > 10_000
        async with http.get(base + "/api/forms") as resp:
            assert resp.status == 401  # the rest of /api still needs the token


def _explore_operation(operation: Any, base: str, auth: dict[str, str],
                       path: dict[str, str] | None, mode: GenerationMode) -> int:
    """MAX_EXAMPLES generated requests to one operation (with these path parameters, if
    given): valid ones or, in negative mode, invalid ones; how many went out."""
    calls = 0

    @hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                         derandomize=True, suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    @hypothesis.given(case=operation.as_strategy(mode, path_parameters=path))
    def explore(case: Any) -> None:
        nonlocal calls
        calls += 1
        case.call_and_validate(base_url=base, headers=auth, checks=CHECKS, timeout=30)

    explore()
    return calls


def _cover_operation(schema: Any, operation: Any, base: str, auth: dict[str, str],
                     path: dict[str, str] | None) -> int:
    """Schemathesis' coverage cases of one operation: boundary values of every parameter and
    body property (longest strings, extreme numbers, missing and wrong types), valid and not,
    with these path parameters if given; how many went out. A failure raises, naming its case."""
    sent = 0
    for case in schema.iter_coverage_cases(
            operation, generation_modes=list(GenerationMode),
            generation_config=schema.config.generation_for(operation=operation)):
        if path is not None:
            case.path_parameters = {**(case.path_parameters or {}), **path}
        case.call_and_validate(base_url=base, headers=auth, checks=CHECKS, timeout=30)
        sent += 1
    return sent


def _explore(document: dict[str, Any], stack: Stack,
             known: dict[str, str]) -> tuple[int, list[str]]:
    """Every operation twice: with generated path parameters (mostly naming nothing), then with
    `known` ones (naming what exists, until a generated DELETE removes it); each time its
    coverage cases, then generated valid and invalid requests. Requests sent, and what went
    wrong, per operation."""
    schema = schemathesis.openapi.from_dict(document)
    auth = {"Authorization": f"Bearer {stack.settings.admin_token}"}
    sent, failures = 0, []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        ingest = operation.path.startswith(("/hooks", "/return"))
        base = stack.url("ingest" if ingest else "casestore")
        names = PATH_PARAM.findall(operation.path)
        for path in ([None, {n: known[n] for n in names}] if names else [None]):
            try:
                sent += _cover_operation(schema, operation, base, auth, path)
            except Exception as exc:
                failures.append(f"{operation.method.upper()} {operation.path} {path} "
                                f"(coverage): {exc}")
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    sent += _explore_operation(operation, base, auth, path, mode)
                except Exception as exc:
                    failures.append(f"{operation.method.upper()} {operation.path} {path} "
                                    f"({mode.value}): {exc}")
    return sent, failures


@pytest.mark.timeout(WITHIN_SECONDS + 60)
async def test_schemathesis_finds_no_server_error_and_no_answer_against_the_description(
        own_stack: Stack, receiver: Receiver) -> None:
    known = await one_of_everything(own_stack, receiver)
    document = await description(own_stack)
    async with asyncio.timeout(WITHIN_SECONDS):
        sent, failures = await asyncio.to_thread(_explore, document, own_stack, known)
    assert failures == [], "\n\n".join(failures)
    assert sent >= len(document["paths"]) * 2
