"""The console screenshots docs/console.md shows (docs/console-*.png), taken the way the
browser tests run.

    .venv/bin/python -m tests.console_screenshots

Starts its own isolated stack (own database, queues and ports, removed afterwards), fills it
with a demo form, two automations and a few dozen cases (one receiver answers some requests
with errors), then photographs each main page in Debian's Chromium at 1280x800 and one at phone
width. The demo deliveries are spread over the last day (their `created_at` moved back) so that
the hourly charts have something to show.
"""

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Page, async_playwright

from services.casestore.migrate import drop_database, migrate
from shared import broker_topology
from shared.db import create_pool
from shared.logging import configure_logging
from tests.receiver import Receiver, Reply
from tests.stack import Stack, isolated_settings
from tests.test_console import CHROMIUM, DESKTOP, FLAGS, PHONE

DOCS = Path(__file__).parent.parent / "docs"
FORM = {"id": "support", "name": "Support requests",
        "sections": [{"name": "Request"}, {"name": "Handling"}],
        "fields": [{"id": "title", "label": "Title", "type": "text", "mandatory": True},
                   {"id": "email", "label": "E-mail", "type": "email"},
                   {"id": "priority", "label": "Priority", "type": "select",
                    "options": ["low", "normal", "high"]},
                   {"id": "ticket", "label": "Helpdesk ticket", "type": "text", "section": 1}],
        "statuses": ["registered", "in_progress", "closed"]}


def automation(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "when": [{"event": "case_created"}], **extra,
            "action": {"type": "outgoing_webhook",
                       "content": [{"key": "caseNumber", "meta": "case_number"},
                                   {"key": "title", "field": "title"}],
                       "settings": {"url": url, "attempts": 2},
                       "response": [{"field": "ticket", "key": "ticket"}]}}


async def fill(stack: Stack, receiver: Receiver) -> None:
    headers = {"Authorization": f"Bearer {stack.settings.admin_token}"}
    async with aiohttp.ClientSession(base_url=stack.url("casestore"), headers=headers) as api:
        await api.post("/api/forms", json=FORM)
        async with api.put("/api/forms/support/incoming-webhook", json={"enabled": True}) as r:
            hook = (await r.json())["url"]
        helpdesk = receiver.endpoint(Reply(body={"ticket": "HD-1042"}))
        flaky = receiver.endpoint(*[Reply(status=400 if n % 5 == 0 else 503 if n % 4 == 0
                                          else 200) for n in range(200)])
        await api.post("/api/forms/support/automations",
                       json=automation("To the helpdesk", helpdesk))
        await api.post("/api/forms/support/automations", json={
            **automation("To the CRM", flaky), "if": {"any": [
                {"field": "priority", "op": "in", "value": ["normal", "high"]}]}})
        async with aiohttp.ClientSession() as http:
            for n in range(36):
                await http.post(hook, json={"title": f"Printer {n} on fire",
                                            "priority": ("low", "normal", "high")[n % 3],
                                            "email": f"user{n}@example.com"})
        await asyncio.sleep(8)  # every delivery settles (retries included)


async def spread_over_the_day(stack: Stack) -> None:
    pool = await create_pool(stack.settings)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE deliveries SET created_at = created_at"
                           " - make_interval(hours => (abs(hashtext(id::text)) % 20))")
    await pool.close()


async def shoot(page: Page, base: str, name: str, path: str) -> None:
    await page.goto(base + path)
    await page.screenshot(path=DOCS / f"console-{name}.png")


async def photograph(stack: Stack) -> None:
    base = stack.url("casestore")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = await browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
        await shoot(page, base, "sign-in", "/console/")
        await page.get_by_label("Password or admin token").fill(stack.settings.admin_token)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url("**/console/")
        delivery = page.locator("tbody tr").first.get_by_role("link").first
        automation_link = page.get_by_role("link", name="To the CRM").first
        await shoot(page, base, "health", "/console/")
        await automation_link.click()
        automation_path = page.url.removeprefix(base)
        for name, path in (("forms", "/console/forms"), ("form", "/console/forms/support"),
                           ("webhook", "/console/forms/support/webhook"),
                           ("automations", "/console/forms/support/automations"),
                           ("automation", automation_path),
                           ("cases", "/console/forms/support/cases"),
                           ("deliveries", "/console/deliveries?state=failed&state=succeeded")):
            await shoot(page, base, name, path)
        await delivery.click()
        await page.screenshot(path=DOCS / "console-delivery.png")
        await page.goto(base + "/console/forms/support/cases")
        await page.get_by_role("rowheader").first.get_by_role("link").click()
        await page.screenshot(path=DOCS / "console-case.png")
        phone = await browser.new_page(viewport=PHONE)  # type: ignore[arg-type]
        await phone.goto(base + "/console/")
        await phone.get_by_label("Password or admin token").fill(stack.settings.admin_token)
        await phone.get_by_role("button", name="Sign in").click()
        await phone.wait_for_url("**/console/")
        await phone.screenshot(path=DOCS / "console-phone.png")
        await browser.close()


async def main() -> None:
    configure_logging("screenshots", "WARNING", json=False)
    settings = isolated_settings(f"shots{uuid.uuid4().hex[:8]}")
    await migrate(settings.database_url)
    stack = Stack(settings)
    await stack.start_all()
    try:
        async with Receiver.running() as receiver:
            await fill(stack, receiver)
            await spread_over_the_day(stack)
            DOCS.mkdir(exist_ok=True)
            await photograph(stack)
    finally:
        await stack.stop_all()
        await broker_topology.delete_topology(settings.amqp_url, settings.name_prefix)
        await drop_database(settings.database_url)


if __name__ == "__main__":
    asyncio.run(main())
