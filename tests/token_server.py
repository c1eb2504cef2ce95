"""A real OAuth 2.0 token endpoint on 127.0.0.1 (client credentials grant), for outgoing auth."""

import base64
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from tests.stack import free_port


@dataclass
class TokenServer:
    """Issues access tokens to one client (HTTP Basic or form-body credentials) and records
    every token request; `expires_in` is what it says a token lives."""

    client_id: str = "casewire"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    expires_in: int | None = 3600
    port: int = field(default_factory=free_port)
    issued: list[str] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth/token"

    def _client(self, request: web.Request, form: dict[str, str]) -> tuple[str, str]:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user, password
        return form.get("client_id", ""), form.get("client_secret", "")

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.requests.append({**form, "authorization": request.headers.get("Authorization", "")})
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if self._client(request, form) != (self.client_id, self.client_secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = secrets.token_urlsafe(24)
        self.issued.append(token)
        answer: dict[str, object] = {"access_token": token, "token_type": "Bearer"}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        return web.json_response(answer)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, **options: object) -> AsyncIterator["TokenServer"]:
        server = cls(**options)  # type: ignore[arg-type]
        app = web.Application()
        app.router.add_post("/oauth/token", server._token)
        server._runner = web.AppRunner(app, handle_signals=False)
        await server._runner.setup()
        await web.TCPSite(server._runner, "127.0.0.1", server.port).start()
        try:
            yield server
        finally:
            await server._runner.cleanup()

    def credentials(self, **overrides: object) -> dict[str, object]:
        """The `auth` of an automation that gets its tokens here."""
        return {"type": "oauth2_client_credentials", "token_url": self.url,
                "client_id": self.client_id, "client_secret": self.client_secret,
                "scope": "cases:write", **overrides}
