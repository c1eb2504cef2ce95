"""Signing in to the console from a test, without a browser: a cookie jar and the CSRF token."""

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from tests.stack import Stack

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ERRORS = re.compile(r'class="error"[^>]*>([^<]*)')


class ConsoleClient:
    """An aiohttp session signed in to the console; `post` sends a page's form with its token."""

    def __init__(self, session: aiohttp.ClientSession, base: str):
        self.session = session
        self.base = base

    async def page(self, path: str, status: int = 200) -> str:
        async with self.session.get(self.base + path, allow_redirects=False) as resp:
            body = await resp.text()
            assert resp.status == status, f"{path}: {resp.status} {body[:500]}"
            return body

    async def csrf(self) -> str:
        match = CSRF.search(await self.page("/console/forms"))
        assert match is not None
        return match.group(1)

    async def post(self, path: str, data: dict[str, Any] | list[tuple[str, str]],
                   status: int = 303) -> tuple[str, str]:
        """(body, Location) of a form post with the CSRF token."""
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        fields.append(("csrf", await self.csrf()))
        async with self.session.post(self.base + path, data=fields,
                                     allow_redirects=False) as resp:
            body = await resp.text()
            problems = ERRORS.findall(body) or body[:2000]
            assert resp.status == status, f"{path}: {resp.status} {problems}"
            return body, resp.headers.get("Location", "")


@contextlib.asynccontextmanager
async def signed_in(stack: Stack, username: str = "",
                    password: str = "") -> AsyncIterator[ConsoleClient]:
    """Signed in as the account (username and password), or with the admin token."""
    # unsafe=True: the jar keeps cookies of an IP address host (127.0.0.1).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        base = stack.url("casestore")
        async with session.post(f"{base}/console/sign-in", allow_redirects=False,
                                data={"username": username,
                                      "token": password or stack.settings.admin_token}) as resp:
            assert resp.status == 303, await resp.text()
        yield ConsoleClient(session, base)


def form_fields(form_id: str, *rows: dict[str, Any], name: str = "Console form",
                sections: str = "Request\nHandling",
                statuses: str = "registered\nclosed") -> list[tuple[str, str]]:
    """The new-form page's inputs for a form with these field rows."""
    data = [("id", form_id), ("name", name), ("sections", sections), ("statuses", statuses),
            ("rows", str(len(rows)))]
    for n, row in enumerate(rows):
        for key, value in row.items():
            if key == "mandatory":
                if value:
                    data.append((f"field-{n}-mandatory", "on"))
            else:
                data.append((f"field-{n}-{key}", str(value)))
    return data


def automation_fields(name: str, url: str, *, when: tuple[str, ...] = ("case_created",),
                      content: tuple[tuple[str, str, str], ...] = (("title", "field", "title"),),
                      response: tuple[tuple[str, str], ...] = (),
                      **settings: str) -> list[tuple[str, str]]:
    """The automation editor's inputs: trigger kinds ticked, content rows, settings."""
    from services.casestore.console.triggers import KINDS

    data = [("name", name), ("url", url), ("enabled", "on"), ("triggers", str(len(KINDS))),
            ("content-rows", str(len(content))), ("response-rows", str(len(response))),
            *{"method": "POST", "auth": "none", "attempts": "1", "timeout": "10",
              "protocol": "json", "retry": "standard", "max_per_second": "",
              "max_in_flight": "", **settings}.items()]
    for n, kind in enumerate(KINDS):
        data.append((f"when-{n}-event", kind.event))
        if kind.event in when:
            data.append((f"when-{n}-use", "on"))
    for n, (key, source, value) in enumerate(content):
        data += [(f"content-{n}-key", key), (f"content-{n}-source", source),
                 (f"content-{n}-value", value)]
    for n, (field, key) in enumerate(response):
        data += [(f"response-{n}-field", field), (f"response-{n}-key", key)]
    return data
