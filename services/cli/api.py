"""The commands that go through casestore's admin API, as its other clients do.

They call it with CASEWIRE_API_TOKEN (an account's token: the audit log then names that
account) or else the admin token (CASEWIRE_ADMIN_TOKEN, or the one `casewire run` keeps in
.casewire/), and say in X-Casewire-Via that the CLI acted, and for which login on which host,
so the audit log tells a terminal's change from a script's.
"""

import getpass
import os
import socket
from typing import Any

import aiohttp

from services.cli.state import TOKEN_FILE
from shared.addresses import VIA_HEADER
from shared.errors import ConfigurationError, DependencyUnavailable
from shared.settings import Settings

TOKEN_VARIABLE = "CASEWIRE_API_TOKEN"  # noqa: S105 - the variable's name


def _token(settings: Settings) -> str:
    token = (os.environ.get(TOKEN_VARIABLE, "").strip() or settings.admin_token
             or (TOKEN_FILE.read_text().strip() if TOKEN_FILE.exists() else ""))
    if not token:
        raise ConfigurationError(f"neither {TOKEN_VARIABLE} nor CASEWIRE_ADMIN_TOKEN is set "
                                 "(and no .casewire/admin-token)")
    return token


def via() -> str:
    """`cli alice@ops-1`: who ran the command, where (the login may be unknown in a container)."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return f"cli {login}@{socket.gethostname()}"[:100]


def _client(settings: Settings) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=settings.casestore_url,
                                 headers={"Authorization": f"Bearer {_token(settings)}",
                                          VIA_HEADER: via()},
                                 timeout=aiohttp.ClientTimeout(total=30))


async def call_api(settings: Settings, method: str, path: str, **kwargs: Any) -> Any:
    try:
        async with _client(settings) as http, http.request(method, path, **kwargs) as resp:
            body = await resp.json()
            if resp.status >= 400:
                raise ConfigurationError("; ".join(e["message"] for e in body["errors"]))
            return body
    except aiohttp.ClientError as exc:
        raise DependencyUnavailable(f"cannot reach casestore at {settings.casestore_url} "
                                    f"({exc!r}); set CASEWIRE_CASESTORE_URL") from exc


async def record_change(settings: Settings, action: str, queue: str,
                        detail: dict[str, Any]) -> None:
    """A change the CLI made on the broker (dead letters requeued or purged), in the audit log
    with the caller as its actor (needs an admin's token)."""
    await call_api(settings, "POST", "/api/audit-log",
                   json={"action": action, "target_id": queue, "detail": detail})
