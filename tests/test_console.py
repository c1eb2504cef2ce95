"""The console in a real headless Chromium (Debian's, driven by Playwright; nothing is
downloaded): sign in, build a form, its webhook and an automation, watch a delivery, replay it.

Every test fails on a JavaScript error or console error in the page. Screenshots of the main
pages go to tests/artifacts/ (not committed).
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from tests.helpers import AutomationFactory, FormFactory
from tests.receiver import Receiver, Reply
from tests.stack import Stack

pytestmark = pytest.mark.timeout(120)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_INSTALLED = CHROMIUM.exists()
# Headless, and quiet: no connection to anything but the pages under test.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).parent / "artifacts"
ARTIFACTS.mkdir(exist_ok=True)
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_INSTALLED:
        pytest.fail("Chromium is not installed: `make test` installs it (tests/system-tools.sh)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        await launched.close()


@dataclass
class Tab:
    """A browser page on the test stack's casestore, collecting every error the page shows."""

    page: Page
    base: str
    problems: list[str] = field(default_factory=list)

    def watch(self) -> None:
        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.problems.append(f"console: {message.text}")

        self.page.on("console", console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))

    async def go(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)

    async def sign_in(self, token: str, username: str = "") -> None:
        await self.go("/console/")
        if username:
            await self.page.get_by_label("Username").fill(username)
        await self.page.get_by_label("Password or admin token").fill(token)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.get_by_role("navigation", name="Main")).to_be_visible()


@pytest.fixture
async def tab(browser: Browser, stack: Stack) -> AsyncIterator[Tab]:
    context = await browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    opened = Tab(await context.new_page(), stack.url("casestore"))
    opened.watch()
    yield opened
    await context.close()
    assert opened.problems == []


async def reload_until(tab: Tab, locator_text: str, within: float = 20.0) -> None:
    """Reload the page until `locator_text` (a CSS selector) shows, as a person would."""
    deadline = asyncio.get_running_loop().time() + within
    while await tab.page.locator(locator_text).count() == 0:
        assert asyncio.get_running_loop().time() < deadline, f"{locator_text} never showed"
        await asyncio.sleep(0.3)
        await tab.page.reload()


async def test_signed_out_visitor_sees_only_the_sign_in_page(tab: Tab) -> None:
    await tab.go("/console/deliveries")
    assert "/console/sign-in" in tab.page.url
    await expect(tab.page.get_by_role("navigation", name="Main")).to_have_count(0)
    await expect(tab.page.get_by_label("Password or admin token")).to_be_focused()
    await tab.shot("sign-in")


async def test_wrong_token_is_refused(tab: Tab) -> None:
    await tab.go("/console/")
    await tab.page.get_by_label("Password or admin token").fill("not-the-admin-token")
    await tab.page.get_by_role("button", name="Sign in").click()
    await expect(tab.page.get_by_role("alert")).to_have_text("That is not the admin token.")
    assert "/console/sign-in" in tab.page.url
    assert await tab.page.context.cookies() == []
    # The refusal is a 401 page, which Chromium reports in the console: expected here only.
    tab.problems[:] = [p for p in tab.problems if "status of 401" not in p]


async def test_build_a_form_and_watch_its_delivery_then_replay_it(
        tab: Tab, stack: Stack, http: aiohttp.ClientSession, receiver: Receiver) -> None:
    page, form_id = tab.page, f"support-{uuid.uuid4().hex[:6]}"
    await tab.sign_in(stack.settings.admin_token)

    await page.get_by_role("link", name="Forms", exact=True).click()
    await page.get_by_role("link", name="New form").click()
    await page.get_by_label("Form id").fill(form_id)
    await page.get_by_label("Name", exact=True).fill("Support")
    await page.locator("#field-0-id").fill("title")
    await page.locator("#field-0-label").fill("Title")
    await page.locator("input[name=field-0-mandatory]").check()
    await page.locator("#field-1-id").fill("priority")
    await page.locator("#field-1-label").fill("Priority")
    await page.locator("#field-1-type").select_option("select")
    await page.locator("#field-1-options").fill("low\nhigh")
    await page.get_by_role("button", name="Create form").click()
    await expect(page.get_by_role("status")).to_have_text("The form was created.")
    await tab.shot("form")

    await page.get_by_role("link", name="Incoming webhook").click()
    await page.get_by_role("button", name="Create webhook").click()
    await expect(page.get_by_role("status").first).to_have_text(
        "The incoming webhook was saved.")
    hook_url = await page.get_by_label("Webhook URL").input_value()
    assert hook_url.startswith(stack.settings.public_base_url + "/hooks/")
    await page.get_by_role("button", name="Copy URL").click()
    await expect(page.locator("[data-copied-for=hook-url]")).to_have_text("Copied.")
    assert await page.evaluate("navigator.clipboard.readText()") == hook_url
    await tab.shot("webhook")

    url = receiver.endpoint(Reply(body={"ticket": "T-1"}))
    await page.get_by_role("link", name="Automations").click()
    await page.get_by_role("link", name="New automation").click()
    await page.get_by_label("Name", exact=True).fill("To the helpdesk")
    await page.get_by_label("A case is created").check()
    await page.locator("#content-0-key").fill("title")
    await page.locator("#content-0-source").select_option("field")
    await page.locator("#content-0-value").fill("title")
    await page.locator("#content-1-key").fill("number")
    await page.locator("#content-1-source").select_option("meta")
    await page.locator("#content-1-value").fill("case_number")
    await page.get_by_label("URL", exact=True).fill(url)
    await page.get_by_label("Attempts (standard retry)").select_option("2")
    await page.get_by_role("button", name="Create automation").click()
    await expect(page.get_by_role("status").first).to_have_text(
        "The automation was created.")
    await page.get_by_role("button", name="Send a test").click()
    await expect(page.locator("pre.answer")).to_contain_text("T-1")
    await tab.shot("automation")
    await receiver.wait_for(url, 1)

    async with http.post(hook_url, json={"title": "Printer on fire"}) as resp:
        assert resp.status == 200
    await receiver.wait_for(url, 2)
    await page.get_by_role("link", name="Deliveries", exact=True).click()
    await reload_until(tab, "td .state-succeeded")
    await tab.shot("deliveries")
    await page.locator("tbody tr").first.get_by_role("link").first.click()
    await expect(page.get_by_role("heading", name="Attempt #1: HTTP 200")).to_be_visible()
    await expect(page.locator(".attempt pre").first).to_contain_text("Printer on fire")
    await expect(page.locator(".attempt pre").nth(1)).to_contain_text("T-1")
    await tab.shot("delivery")

    await page.get_by_role("button", name="Replay this delivery").click()
    await expect(page.get_by_role("status").first).to_have_text(
        "The delivery will be sent again.")
    await receiver.wait_for(url, 3)
    await reload_until(tab, "h3#attempt-2")
    assert (await receiver.wait_for(url, 3))[2].json() == {"title": "Printer on fire",
                                                            "number": 1}

    await page.get_by_role("link", name="Forms", exact=True).click()
    await tab.shot("forms")
    await page.get_by_role("link", name="Cases of Support: 1").click()
    await tab.shot("cases")
    await page.get_by_role("rowheader", name="1").get_by_role("link").click()
    await expect(page.get_by_text("Printer on fire").first).to_be_visible()
    await expect(page.locator("td .state-succeeded")).to_have_count(1)
    await tab.shot("case")


async def test_health_page_charts_each_automation(
        tab: Tab, stack: Stack, make_form: FormFactory, make_automation: AutomationFactory,
        http: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(), Reply(status=500), Reply(status=422), Reply())
    automation = await make_automation(hook["form_id"], url)
    for n in range(4):
        async with http.post(hook["url"], json={"text-field": f"case {n}"}) as resp:
            assert resp.status == 200
    await receiver.wait_for(url, 4)
    await tab.sign_in(stack.settings.admin_token)
    chart = tab.page.get_by_role("img", name=f"{automation['name']}: deliveries per hour")
    deadline = asyncio.get_running_loop().time() + 20
    while "2 succeeded, 2 failed" not in (await chart.get_attribute("aria-label") or ""):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.3)
        await tab.page.reload()
    await expect(tab.page.get_by_role("list", name="Legend")).to_contain_text("failed")
    await expect(tab.page.get_by_role("table")).to_contain_text("dead letters")
    await tab.shot("health")


MAIN_PAGES = ("/console/", "/console/forms", "/console/deliveries")


async def test_main_pages_fit_a_phone_screen(browser: Browser, stack: Stack,
                                             make_form: FormFactory) -> None:
    hook = await make_form()
    context = await browser.new_context(viewport=PHONE)  # type: ignore[arg-type]
    tab = Tab(await context.new_page(), stack.url("casestore"))
    tab.watch()
    await tab.sign_in(stack.settings.admin_token)
    form = f"/console/forms/{hook['form_id']}"
    for path in (*MAIN_PAGES, form, f"{form}/webhook", f"{form}/automations/new"):
        await tab.go(path)
        overflow = await tab.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} is {overflow} px wider than the phone's screen"
    await tab.go("/console/")
    await tab.shot("phone-health")
    await context.close()
    assert tab.problems == []


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label'))
  .map(el => el.outerHTML)"""
NOT_BUTTONS = """() => [...document.querySelectorAll('[onclick], [role=button]:not(button)')]
  .map(el => el.outerHTML)"""


async def test_usable_by_keyboard(tab: Tab, stack: Stack, make_form: FormFactory) -> None:
    hook = await make_form()
    page = tab.page
    await tab.go("/console/")
    await expect(page.get_by_label("Password or admin token")).to_be_focused()
    await page.keyboard.type(stack.settings.admin_token)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Casewire console")).to_be_focused()
    form = f"/console/forms/{hook['form_id']}"
    for path in (*MAIN_PAGES, form, f"{form}/webhook", f"{form}/automations/new",
                 f"{form}/cases", "/console/forms/new"):
        await tab.go(path)
        assert await page.evaluate(UNLABELLED) == [], f"inputs without a label on {path}"
        assert await page.evaluate(NOT_BUTTONS) == [], f"click targets not buttons on {path}"


async def test_an_account_signs_in_sees_who_it_is_and_reads_the_audit_log(
        tab: Tab, api: aiohttp.ClientSession) -> None:
    username, password = f"ed-{uuid.uuid4().hex[:8]}", "a long pass phrase"
    async with api.post("/api/accounts", json={"username": username, "role": "editor",
                                               "password": password}) as resp:
        assert resp.status == 201
    await tab.sign_in(password, username)
    await expect(tab.page.get_by_text(f"Signed in as {username} (editor)")).to_be_visible()
    await tab.page.get_by_role("link", name="Audit log").click()
    await expect(tab.page.get_by_role("heading", name="Audit log")).to_be_visible()
    await tab.page.get_by_label("Target").fill(username)
    await tab.page.get_by_role("button", name="Show").click()
    row = tab.page.locator("tbody tr").filter(has_text="account.created")
    await expect(row).to_have_count(1)
    await row.locator("summary").click()  # opens the before and after
    await expect(row.locator("pre")).to_contain_text('"role": "editor"')
    await expect(row.locator("pre")).not_to_contain_text(password)
    await tab.shot("audit-log")

