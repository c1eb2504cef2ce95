"""The dispatcher caches each form's automations; a change applies from the very next case."""

import asyncio
from typing import Any

import aiohttp
import asyncpg

from shared.settings import Settings
from tests.helpers import AutomationFactory, FormFactory, new_case, sample_form, webhook_action
from tests.receiver import Receiver


async def case_numbers(receiver: Receiver, url: str, count: int) -> list[int]:
    arrived = await receiver.wait_for(url, count)
    return sorted(r.json()["caseNumber"] for r in arrived)


async def test_automation_changes_apply_from_the_next_case_with_the_cache_warm(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    form_id = (await make_form())["form_id"]
    first, second, moved = receiver.endpoint(), receiver.endpoint(), receiver.endpoint()
    a = await make_automation(form_id, first)
    await new_case(api, form_id)
    assert await case_numbers(receiver, first, 1) == [1]  # the dispatcher has the rules now

    b = await make_automation(form_id, second)
    await new_case(api, form_id)
    assert await case_numbers(receiver, first, 2) == [1, 2]
    assert await case_numbers(receiver, second, 1) == [2]

    async with api.post(f"/api/automations/{a['id']}/disable") as resp:
        assert resp.status == 200
    async with api.put(f"/api/automations/{b['id']}",
                       json={**b, "action": webhook_action(moved)}) as resp:
        assert resp.status == 200, await resp.text()
    await new_case(api, form_id)
    assert await case_numbers(receiver, moved, 1) == [3]
    await asyncio.sleep(0.5)  # the disabled automation and the old URL had as long to fire
    assert len(receiver.at(first)) == 2
    assert len(receiver.at(second)) == 1


async def form_revision(conn: asyncpg.Connection, form_id: str) -> int:
    return int(await conn.fetchval("SELECT revision FROM forms WHERE id = $1", form_id))


async def test_form_revision_grows_with_every_change_to_the_form_or_its_automations(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver, settings: Settings) -> None:
    form_id = (await make_form())["form_id"]
    conn = await asyncpg.connect(settings.database_url)
    try:
        seen = [await form_revision(conn, form_id)]

        async def changed(method: str, path: str, body: dict[str, Any] | None = None) -> None:
            async with api.request(method, path, json=body) as resp:
                assert resp.status == 200, await resp.text()
            seen.append(await form_revision(conn, form_id))
            assert seen[-1] > seen[-2], f"{method} {path} left the revision at {seen[-2]}"

        automation = await make_automation(form_id, receiver.endpoint())
        seen.append(await form_revision(conn, form_id))
        assert seen[-1] > seen[-2]
        await changed("POST", f"/api/automations/{automation['id']}/disable")
        await changed("POST", f"/api/automations/{automation['id']}/rotate-secret")
        await changed("PUT", f"/api/forms/{form_id}", {**sample_form(form_id), "name": "Renamed"})
        await changed("DELETE", f"/api/automations/{automation['id']}")

        async with api.delete(f"/api/forms/{form_id}") as resp:
            assert resp.status == 200, await resp.text()
        async with api.post("/api/forms", json=sample_form(form_id)) as resp:
            assert resp.status == 201, await resp.text()
        # A form created again under the same id must not look older than a cached one.
        assert await form_revision(conn, form_id) > seen[-1]
    finally:
        await conn.close()
