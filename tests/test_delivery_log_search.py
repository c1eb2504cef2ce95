"""The delivery log searched by webhook-id, case, automation, state, answered status and time
(indexed, paged), in the API and `casewire deliveries`; why a waiting delivery is held; a
disabled automation keeps the reason it was disabled for."""

import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.casestore.repo.deliveries import DELIVERY_SUMMARY, DeliveryFilter
from shared.settings import Settings
from tests.console_helpers import signed_in
from tests.helpers import AutomationFactory, FormFactory, call, new_case, until, webhook_action
from tests.receiver import Receiver, Reply
from tests.stack import Stack
from tests.test_cli_operations import run_cli, stack_env


async def log(api: aiohttp.ClientSession, **params: str) -> list[dict[str, Any]]:
    body = await call(api, "GET", "/api/deliveries", 200, params=params)
    deliveries: list[dict[str, Any]] = body["deliveries"]
    return deliveries


async def finished(api: aiohttp.ClientSession, automation_id: str,
                   count: int) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]] | None:
        found = await log(api, automation=automation_id, state="succeeded,failed")
        return found if len(found) >= count else None

    return await until(listed, within=20)


@pytest.fixture
async def three_outcomes(make_form: FormFactory, make_automation: AutomationFactory,
                         api: aiohttp.ClientSession, receiver: Receiver) -> dict[str, Any]:
    """One form, three automations: answered 200, answered 401, never answered."""
    hook = await make_form()
    ok, refused = receiver.endpoint(), receiver.endpoint(Reply(status=401))
    made = {name: await make_automation(hook["form_id"], url, action=webhook_action(url))
            for name, url in (("ok", ok), ("refused", refused),
                              ("unreachable", "http://127.0.0.1:9/closed"))}
    cases = [await new_case(api, hook["form_id"]) for _ in range(2)]
    for automation in made.values():
        await finished(api, automation["id"], 2)
    return {"form": hook["form_id"], "cases": cases,
            **{name: a["id"] for name, a in made.items()}}


async def test_the_log_filters_by_answered_status_webhook_id_and_case_and_pages(
        three_outcomes: dict[str, Any], api: aiohttp.ClientSession) -> None:
    o = three_outcomes
    mine = {o["ok"]: "ok", o["refused"]: "refused", o["unreachable"]: "unreachable"}

    async def names(**params: str) -> list[str]:
        return sorted(mine[d["automation_id"]] for d in await log(api, **params)
                      if d["automation_id"] in mine)

    assert await names(status="401") == ["refused"] * 2
    assert await names(status="2xx") == ["ok"] * 2
    assert await names(status="none") == ["unreachable"] * 2
    assert await names(status="4xx,none") == ["refused"] * 2 + ["unreachable"] * 2
    assert await names(status="401", automation=o["ok"]) == []
    case = o["cases"][0]["id"]
    by_case = await log(api, case=case, status="2xx,401")
    assert sorted(mine[d["automation_id"]] for d in by_case) == ["ok", "refused"]
    [one] = await log(api, case=case, automation=o["ok"])
    assert await log(api, webhook_id=one["webhook_id"]) == [one]
    assert one["held"] is None
    first = await log(api, status="4xx,none", limit="3")
    rest = await call(api, "GET", "/api/deliveries", 200, params={
        "status": "4xx,none", "limit": "3", "before": first[-1]["id"]})
    ids = [d["id"] for d in first + rest["deliveries"] if d["automation_id"] in mine]
    assert len(ids) == len(set(ids)) == 4


@pytest.mark.parametrize(("name", "value"), [
    ("webhook_id", "msg_nothex"), ("webhook_id", "0b6c2f4e8d1a4f579a3e5c7d9e1f2a3b"),
    ("status", "600"), ("status", "6xx"), ("status", "ok"), ("status", "401,"),
])
async def test_a_bad_filter_is_a_400_naming_it(api: aiohttp.ClientSession, name: str,
                                               value: str) -> None:
    answer = await call(api, "GET", "/api/deliveries", 400, params={name: value})
    assert answer["errors"][0]["field"] == name


@pytest.mark.parametrize(("where", "table", "column"), [
    (DeliveryFilter(webhook_id=("msg_" + "0" * 32, uuid.UUID(int=0))), "deliveries", "id"),
    (DeliveryFilter(statuses=((401, 401), None)), "delivery_attempts", "response_status"),
    (DeliveryFilter(case_id=uuid.UUID(int=1)), "deliveries", "case_id"),
    (DeliveryFilter(automation_id=uuid.UUID(int=1)), "deliveries", "automation_id"),
    (DeliveryFilter(states=("failed",)), "deliveries", "state"),
    (DeliveryFilter(since=datetime.now(UTC)), "deliveries", "created_at"),
])
async def test_every_filter_has_an_index_led_by_its_column(
        settings: Settings, stack: Stack, where: DeliveryFilter, table: str,
        column: str) -> None:
    args: list[Any] = []
    condition = where.where(args)
    assert column in condition.replace("da.", "").replace("d.", "")
    conn = await asyncpg.connect(settings.database_url)
    try:
        leading = await conn.fetch(
            "SELECT i.indexrelid::regclass::text AS name FROM pg_index i"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = $1::regclass AND a.attname = $2", table, column)
        # And the statement as the API runs it is valid SQL with these parameters.
        await conn.fetch(f"{DELIVERY_SUMMARY} WHERE {condition} LIMIT 1", *args)
    finally:
        await conn.close()
    assert leading, f"no index on {table} starts with {column}"


async def test_the_cli_lists_with_the_same_filters_and_an_automation_column(
        three_outcomes: dict[str, Any], stack: Stack, api: aiohttp.ClientSession) -> None:
    o = three_outcomes
    [refused, _] = await log(api, automation=o["refused"])
    code, out = await run_cli(stack_env(stack.settings), "deliveries", "--status", "401",
                              "--automation", o["refused"], "--limit", "5")
    assert code == 0, out
    name = (await call(api, "GET", f"/api/automations/{o['refused']}", 200))["name"]
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 2
    assert all(f"automation='{name}'" in line and "last=401" in line for line in lines)
    code, out = await run_cli(stack_env(stack.settings), "deliveries", "--webhook-id",
                              refused["webhook_id"])
    assert code == 0, out
    assert out.split()[0] == refused["id"]


async def test_a_waiting_delivery_says_it_is_held_by_its_disabled_automation_and_why(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver, stack: Stack) -> None:
    hook, url = await make_form(), receiver.endpoint(Reply(status=503))
    automation = await make_automation(hook["form_id"], url, action=webhook_action(
        url, retry="extended"))  # its second attempt waits 5 s
    await new_case(api, hook["form_id"])
    await receiver.wait_for(url, 1)
    path = f"/api/automations/{automation['id']}"
    await call(api, "POST", f"{path}/disable", 200, {"reason": "CRM migration until Monday"})

    async def held() -> list[dict[str, Any]] | None:
        found = await log(api, automation=automation["id"], state="retrying")
        return found if found and found[0]["held"] else None

    [waiting] = await until(held, within=10)
    assert waiting["held"] == "its automation is disabled (CRM migration until Monday)"
    # Disabling it again, by the CLI, keeps the reason (and the time) it was disabled for.
    before = await call(api, "GET", path, 200)
    code, out = await run_cli(stack_env(stack.settings), "automations", "disable",
                              automation["id"])
    assert code == 0, out
    assert "CRM migration until Monday" in out
    after = await call(api, "GET", path, 200)
    assert (after["disabled_reason"], after["disabled_at"]) == (
        before["disabled_reason"], before["disabled_at"])
    code, out = await run_cli(stack_env(stack.settings), "deliveries", "--automation",
                              automation["id"])
    assert "held: its automation is disabled (CRM migration until Monday)" in out
    await call(api, "POST", f"{path}/enable", 200)
    fresh = await call(api, "POST", f"{path}/disable", 200)
    assert fresh["disabled_reason"] == "disabled through the API"


async def test_the_console_filters_by_answered_status_and_webhook_id(
        three_outcomes: dict[str, Any], stack: Stack, api: aiohttp.ClientSession) -> None:
    o = three_outcomes
    [refused, _] = await log(api, automation=o["refused"])
    async with signed_in(stack) as console:
        page = await console.page(f"/console/deliveries?status=401&automation={o['refused']}")
        assert page.count('href="/console/deliveries/') == 2
        page = await console.page(f"/console/deliveries?webhook_id={refused['webhook_id']}")
        assert page.count('href="/console/deliveries/') == 1
        assert refused["id"] in page
        page = await console.page("/console/deliveries?status=6xx")
        assert "none (no answer)" in page


async def test_a_waiting_delivery_says_its_endpoint_is_paused_until_when(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver, settings: Settings) -> None:
    hook, url = await make_form(), receiver.endpoint(Reply(status=503))
    automation = await make_automation(hook["form_id"], url, action=webhook_action(
        url, retry="extended"))
    await new_case(api, hook["form_id"])

    async def retrying() -> list[dict[str, Any]]:
        return await log(api, automation=automation["id"], state="retrying")

    await until(retrying, within=10)  # the first attempt's failure is recorded
    conn = await asyncpg.connect(settings.database_url)
    try:  # as the circuit breaker opens it after CASEWIRE_BREAKER_FAILURES failures
        until_at = await conn.fetchval(
            "UPDATE endpoint_health SET state = 'open', state_since = now(),"
            " open_until = now() + interval '1 hour'"
            " WHERE automation_id = $1 RETURNING open_until", uuid.UUID(automation["id"]))
    finally:
        await conn.close()
    [waiting] = await retrying()
    assert waiting["held"] == (f"its endpoint is paused after failing, until "
                               f"{until_at.isoformat()} (then one probe)")
