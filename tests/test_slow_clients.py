"""Slow clients on ingest (public): a request head or body trickled in byte by byte is cut off
in time, and past the connection cap a new connection is closed at once."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from tests.helpers import FormFactory
from tests.stack import Stack, free_port

LIMITS = {"header_timeout_seconds": 1.0, "body_timeout_seconds": 1.0, "max_connections": 20}


@contextlib.asynccontextmanager
async def ingest_with(stack: Stack, **overrides: Any) -> AsyncIterator[Stack]:
    """One more ingest on the stack's broker and database, with these settings."""
    other = Stack(stack.settings.model_copy(update={"ingest_port": free_port(), **overrides}))
    await other.start("ingest")
    try:
        yield other
    finally:
        await other.stop("ingest")


async def trickle(port: int, data: bytes, every: float = 0.25,
                  at_once: int = 0) -> tuple[float, bytes, int]:
    """Send the first `at_once` bytes of `data`, then a byte every `every` seconds until the
    server answers or closes; how long that took, what it answered, how many bytes went out."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data[:at_once])
    started, sent = time.monotonic(), at_once
    answer = asyncio.ensure_future(reader.read())
    try:
        while not answer.done() and sent < len(data):
            writer.write(data[sent:sent + 1])
            sent += 1
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            await asyncio.wait([answer], timeout=every)
        return time.monotonic() - started, await asyncio.wait_for(answer, 30), sent
    finally:
        writer.close()


async def test_a_request_head_trickled_in_is_cut_off_after_the_header_timeout(
        stack: Stack, make_form: FormFactory) -> None:
    hook = await make_form()
    async with ingest_with(stack, **LIMITS) as ingest:
        head = (f"POST /hooks/{hook['token']} HTTP/1.1\r\nHost: x\r\n"
                + "X-Padding: " + "a" * 200 + "\r\n\r\n").encode()
        took, answer, sent = await trickle(ingest.port("ingest"), head)
    assert answer == b""  # closed, no answer
    assert sent < len(head)  # before the head was whole
    assert 0.9 <= took < 5


async def test_a_body_trickled_in_is_answered_408_after_the_body_timeout(
        stack: Stack, make_form: FormFactory) -> None:
    hook = await make_form()
    body = orjson.dumps({"text-field": "x" * 200})
    head = (f"POST /hooks/{hook['token']} HTTP/1.1\r\nHost: x\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    async with ingest_with(stack, **LIMITS) as ingest:
        _, whole, _ = await trickle(ingest.port("ingest"), head + body, every=0.0)
        took, answer, sent = await trickle(ingest.port("ingest"), head + body,
                                           at_once=len(head))
    assert whole.startswith(b"HTTP/1.1 200")  # the same request sent at once is a case
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"code":"request_timeout"' in answer
    assert b"Connection: close" in answer
    assert len(head) < sent < len(head) + len(body)
    assert 0.9 <= took < 6  # the body timeout, then the linger, then closed


async def test_past_the_connection_cap_a_new_connection_is_closed_at_once(
        stack: Stack, make_form: FormFactory) -> None:
    hook = await make_form()
    async with ingest_with(stack, **{**LIMITS, "header_timeout_seconds": 30.0}) as ingest:
        port = ingest.port("ingest")
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        await asyncio.sleep(0.2)  # all accepted
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        refused = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        for _, held_writer in held[:5]:
            held_writer.close()
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as http, http.post(
                f"{ingest.url('ingest')}/hooks/{hook['token']}",
                json={"text-field": "room again"}) as resp:
            assert resp.status == 200
        for _, held_writer in held[5:]:
            held_writer.close()
    assert refused == b""
