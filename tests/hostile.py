"""Hostile requests written byte for byte (clients refuse to send headers that are not UTF-8),
the values that once made 500s, and a stack holding one of everything for them to aim at."""

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes

import aiohttp

from tests.console_helpers import CSRF
from tests.helpers import sample_form, until, webhook_action
from tests.receiver import Receiver
from tests.stack import Stack

HUGE_DIGITS = "9" * 5000  # Python's int() refuses more than 4,300 digits
NOT_UTF8 = b"\xff\xfe\xc3\x28"
# A deep array holding a huge float: orjson parses it, the exact re-read of big integers
# recursed past Python's limit.
DEEP_JSON = b'{"f":' + b"[" * 990 + b"1e300" + b"]" * 990 + b"}"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(port: int, head: bytes, body: bytes = b"", within: float = 30) -> Answer:
    """One HTTP/1.1 request: `head` is the request line and headers (each ending in CRLF);
    the length and `Connection: close` are added."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(within):
            writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                         .encode() + body)
            await writer.drain()
            status_line = await reader.readline()
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            return Answer(int(status_line.split()[1]), headers, await reader.read())
    finally:
        writer.close()


def request_head(method: str, target: bytes, headers: list[tuple[str, bytes]]) -> bytes:
    return (f"{method} ".encode() + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers))


def encoded(value: str | bytes) -> str:
    """A path segment or query value percent-encoded byte for byte (invalid UTF-8 kept)."""
    return quote_from_bytes(value.encode("utf-8", "surrogatepass")
                            if isinstance(value, str) else value, safe="")


async def one_of_everything(stack: Stack, receiver: Receiver) -> dict[str, str]:
    """A form with its webhook, a user, a case with a file, an automation and its delivery, an
    account and its token; the path parameters that name them."""
    headers = {"Authorization": f"Bearer {stack.settings.admin_token}"}
    async with aiohttp.ClientSession(base_url=stack.url("casestore"), headers=headers) as api:
        async def call(method: str, path: str, status: int, **kwargs: Any) -> Any:
            async with api.request(method, path, **kwargs) as resp:
                assert resp.status == status, await resp.text()
                return await resp.json()

        await call("POST", "/api/forms", 201, json=sample_form("st-form"))
        hook = await call("PUT", "/api/forms/st-form/incoming-webhook", 200, json={})
        await call("POST", "/api/users", 201, json={"username": "st-user", "password": "p" * 8,
                                                    "forms": ["st-form"]})
        # An account of the same name, so /api/accounts/{username} names one too.
        await call("POST", "/api/accounts", 201, json={"username": "st-user", "role": "viewer"})
        token = await call("POST", "/api/accounts/st-user/tokens", 201, json={"name": "st"})
        automation = await call("POST", "/api/forms/st-form/automations", 201, json={
            "name": "st", "when": [{"event": "case_created"}],
            "action": webhook_action(receiver.endpoint())})
        case = await call("POST", "/api/forms/st-form/cases", 201,
                          json={"data": {"text-field": "x"}})
        uploaded = await call("POST", f"/api/cases/{case['id']}/files/attachment?name=a.txt",
                              201, data=b"hello")

        async def delivery() -> Any:
            return (await call("GET", "/api/deliveries", 200))["deliveries"]

        [sent] = await until(delivery)
    return {"form_id": "st-form", "token": hook["token"], "username": "st-user",
            "case_id": case["id"], "field_id": "attachment", "file_id": uploaded["id"],
            "automation_id": automation["id"], "delivery_id": sent["id"], "depth": "0",
            "options": "skipvalidate", "file_url": uploaded["url"], "token_id": token["id"]}


async def console_session(stack: Stack) -> tuple[bytes, bytes]:
    """A fresh console session: its cookie header value and its CSRF token."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        base = stack.url("casestore")
        async with session.post(f"{base}/console/sign-in", allow_redirects=False,
                                data={"token": stack.settings.admin_token}) as resp:
            assert resp.status == 303, await resp.text()
        async with session.get(f"{base}/console/forms") as resp:
            match = CSRF.search(await resp.text())
        assert match is not None
        cookie = "; ".join(f"{c.key}={c.value}" for c in jar)
    return cookie.encode(), match.group(1).encode()

