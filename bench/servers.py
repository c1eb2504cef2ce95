"""Reference servers, each run as its own process: `python -m bench.servers KIND PORT`.

- `aiohttp`: bare aiohttp on uvloop (what every Casewire service runs on): reads the POST body
  and answers `200 {}`. The limit for ingest.
- `aiohttp-asyncio`: the same on the default asyncio loop, to show what uvloop is worth.
- `raw`: a plain asyncio protocol answering `200 {}` with no framework at all, several times
  faster than aiohttp: the load generator's own ceiling is measured against it.
"""

import asyncio
import sys
from typing import cast

from aiohttp import web

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def _answer(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b"{}", content_type="application/json")


def aiohttp_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/{tail:.*}", _answer)
    return app


class RawServer(asyncio.Protocol):
    """Answers every complete request (headers plus Content-Length body) with `200 {}`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end].lower()
            at = head.find(b"content-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + 15:stop if stop > 0 else None])
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length:]
            assert self.transport is not None
            self.transport.write(OK)
        self.buffer = buffer


async def _serve_raw(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(RawServer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "raw":
        import uvloop

        uvloop.run(_serve_raw(port))
        return
    if kind == "aiohttp":
        import uvloop

        uvloop.install()
    web.run_app(aiohttp_app(), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(sys.argv[1:])
