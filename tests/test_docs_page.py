"""/api/docs, where admins paste the bearer token: sent so that no other site can frame it or
slip a script into it, and still working in a real browser under those rules."""

import aiohttp
from playwright.async_api import Browser, expect

from tests.stack import Stack
from tests.test_console import FLAGS, Tab, browser

__all__ = ["FLAGS", "browser"]  # the fixture used here


async def test_the_docs_page_and_its_files_forbid_framing_sniffing_and_foreign_scripts(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    base = stack.url("casestore")
    for path in ("/api/docs", "/api/docs/start.js", "/api/docs/assets/swagger-ui-bundle.js"):
        async with http.get(base + path) as resp:
            assert resp.status == 200, path
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            policy = resp.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in policy
            assert "script-src 'self';" in policy
            assert "'unsafe-eval'" not in policy
            assert f"connect-src 'self' {stack.settings.public_base_url};" in policy
    async with http.get(base + "/api/docs") as resp:
        assert "<script>" not in await resp.text()  # no inline script the policy would refuse


async def test_swagger_ui_runs_under_its_policy_in_a_real_browser(
        browser: Browser, stack: Stack) -> None:
    context = await browser.new_context()
    try:
        tab = Tab(await context.new_page(), stack.url("casestore"))
        tab.watch()  # a refused script or style is a console error
        await tab.go("/api/docs")
        await expect(tab.page.get_by_role("heading", name="Casewire")).to_be_visible()
        await expect(tab.page.get_by_text("/api/forms/{form_id}/cases").first).to_be_visible()
        assert tab.problems == []
    finally:
        await context.close()
