"""`casewire deliveries` and `casewire replay`: the delivery log from a terminal.

They go through casestore's admin API, like any other client, with the admin token from
CASEWIRE_ADMIN_TOKEN or the one `casewire run` keeps in .casewire/.
"""

import argparse
from pathlib import Path
from typing import Any

import aiohttp

from shared.errors import ConfigurationError, DependencyUnavailable
from shared.settings import Settings

TOKEN_FILE = Path(".casewire") / "admin-token"


def _client(settings: Settings) -> aiohttp.ClientSession:
    token = settings.admin_token or (TOKEN_FILE.read_text().strip() if TOKEN_FILE.exists()
                                     else "")
    if not token:
        raise ConfigurationError("CASEWIRE_ADMIN_TOKEN is not set (and no .casewire/admin-token)")
    return aiohttp.ClientSession(base_url=settings.casestore_url,
                                 headers={"Authorization": f"Bearer {token}"},
                                 timeout=aiohttp.ClientTimeout(total=30))


async def _call(settings: Settings, method: str, path: str, **kwargs: Any) -> Any:
    try:
        async with _client(settings) as http, http.request(method, path, **kwargs) as resp:
            body = await resp.json()
            if resp.status >= 400:
                raise ConfigurationError("; ".join(e["message"] for e in body["errors"]))
            return body
    except aiohttp.ClientError as exc:
        raise DependencyUnavailable(f"cannot reach casestore at {settings.casestore_url} "
                                    f"({exc!r}); set CASEWIRE_CASESTORE_URL") from exc


async def deliveries(settings: Settings, args: argparse.Namespace) -> int:
    """One line per delivery, newest first; `--id` shows every attempt of one."""
    if args.id:
        found = await _call(settings, "GET", f"/api/deliveries/{args.id}")
        print(f"{found['id']}  {found['state']}  webhook-id {found['webhook_id']}")
        for a in found["attempts"]:
            outcome = a["response_status"] or a["error"]
            print(f"  #{a['number']} {a['started_at']}  {a['request']['method']} "
                  f"{a['request']['url']}  -> {outcome}  ({a['duration_ms']:.0f} ms)")
        return 0
    params = {k: v for k, v in (("automation", args.automation), ("case", args.case),
                                ("state", args.state), ("limit", str(args.limit))) if v}
    for d in (await _call(settings, "GET", "/api/deliveries", params=params))["deliveries"]:
        last = d["last_response_status"] or d["last_error"] or ""
        print(f"{d['id']}  {d['state']:9}  attempts={d['attempt_count']}  "
              f"last={last}  case={d['case_id']}  {d['updated_at']}")
    return 0


async def replay(settings: Settings, args: argparse.Namespace) -> int:
    result = await _call(settings, "POST", f"/api/deliveries/{args.delivery_id}/replay")
    print(f"replay requested for {result['delivery_id']}")
    return 0


def add_parsers(sub: Any) -> None:
    listing = sub.add_parser("deliveries", help="list outgoing-webhook deliveries (newest first)")
    listing.add_argument("--automation", help="only this automation's")
    listing.add_argument("--case", help="only this case's")
    listing.add_argument("--state", choices=["succeeded", "failed"])
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--id", help="show every attempt of this one delivery")
    again = sub.add_parser("replay", help="send a delivery again (same webhook-id)")
    again.add_argument("delivery_id")
