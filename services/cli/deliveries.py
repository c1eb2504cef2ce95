"""`casewire deliveries` and `casewire replay`: the delivery log from a terminal.

They go through casestore's admin API, like any other client (services/cli/api.py).
"""

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from services.cli.api import call_api
from services.cli.output import say
from shared.event_payloads import DeliveryState
from shared.settings import Settings

STATES: tuple[str, ...] = get_args(DeliveryState)
FINISHED = ("succeeded", "failed")  # what a replay sends again
AGO = re.compile(r"(\d+)([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def when(text: str, now: datetime | None = None) -> str:
    """`30m`, `2h`, `1d` (that long ago) or an ISO time (UTC unless it says otherwise), as the
    ISO time the API's `since` and `until` take."""
    ago = AGO.fullmatch(text.strip())
    if ago:
        span = timedelta(**{UNITS[ago.group(2)]: int(ago.group(1))})
        return ((now or datetime.now(UTC)) - span).isoformat()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a duration ago (30m, 2h, 1d) or an ISO time "
            "(2026-12-01T08:00:00Z)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


def states(text: str) -> str:
    """One state or several, comma separated."""
    unknown = set(text.split(",")) - set(STATES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown state {sorted(unknown)[0]!r}; expected "
                                         f"one or more of {', '.join(STATES)}")
    return text


def _line(d: dict[str, Any]) -> str:
    """One delivery; a waiting one says when its next attempt is due."""
    last = d["last_response_status"] or d["last_error"] or ""
    line = (f"{d['id']}  {d['state']:9}  attempts={d['attempt_count']}/{d['attempts_allowed']}"
            f"  last={last}  automation={d['automation_name']!r}  case={d['case_id']}"
            f"  {d['updated_at']}")
    if d["state"] in ("pending", "retrying") and d["next_attempt_at"]:
        line += f"  next={d['next_attempt_at']}"
    if d.get("held"):
        line += f"  held: {d['held']}"
    return line


async def _attempts(settings: Settings, delivery_id: str) -> None:
    found = await call_api(settings, "GET", f"/api/deliveries/{delivery_id}")
    say(f"{found['id']}  {found['state']}  webhook-id {found['webhook_id']}")
    for a in found["attempts"]:
        outcome = a["response_status"] or a["error"]
        say(f"  #{a['number']} {a['started_at']}  {a['request']['method']} "
              f"{a['request']['url']}  -> {outcome}  ({a['duration_ms']:.0f} ms)")


async def deliveries(settings: Settings, args: argparse.Namespace) -> int:
    """One line per delivery, newest first; `--id` shows every attempt of one."""
    if args.id:
        await _attempts(settings, args.id)
        return 0
    params = {k: v for k, v in (("automation", args.automation), ("case", args.case),
                                ("state", args.state), ("since", args.since),
                                ("until", args.until), ("webhook_id", args.webhook_id),
                                ("status", args.status), ("limit", str(args.limit))) if v}
    for d in (await call_api(settings, "GET", "/api/deliveries", params=params))["deliveries"]:
        say(_line(d))
    return 0


def replay_usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a `replay` command line, if anything."""
    if args.automation is None:
        if args.since or args.until or args.state:
            return "--since, --until and --state go with --automation"
        return None
    # A bulk resend cannot be taken back: the window is never implied.
    return None if args.since else "--automation needs --since (e.g. --since 2h)"


async def replay(settings: Settings, args: argparse.Namespace) -> int:
    """One delivery again, or every finished delivery of an automation in a time window."""
    if args.automation is None:
        result = await call_api(settings, "POST", f"/api/deliveries/{args.delivery_id}/replay")
        say(f"replay requested for {result['delivery_id']}")
        return 0
    window = {k: v for k, v in (("state", args.state), ("since", args.since),
                                ("until", args.until)) if v}
    result = await call_api(settings, "POST", f"/api/automations/{args.automation}/replay",
                         json=window)
    say(f"{result['replayed']} deliveries of automation {result['automation_id']} "
          "replayed")
    return 0


def add_parsers(sub: Any) -> argparse.ArgumentParser:
    """`deliveries` and `replay`; returns `replay`'s parser, for replay_usage_problem."""
    listing = sub.add_parser("deliveries", help="list outgoing-webhook deliveries (newest "
                             "first); waiting ones show when their next attempt is due")
    listing.add_argument("--automation", help="only this automation's")
    listing.add_argument("--case", help="only this case's")
    listing.add_argument("--state", type=states,
                         help=f"only these, comma separated: {', '.join(STATES)}")
    _window(listing)
    listing.add_argument("--webhook-id", help="the delivery a receiver got as webhook-id msg_...")
    listing.add_argument("--status", help="an attempt answered with one of these, comma "
                         "separated: 503, 5xx, none (no answer)")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--id", help="show every attempt of this one delivery")
    again: argparse.ArgumentParser = sub.add_parser(
        "replay", help="send a delivery again (same webhook-id), or every finished delivery "
        "of an automation in a time window")
    target = again.add_mutually_exclusive_group(required=True)
    target.add_argument("delivery_id", nargs="?", help="the one delivery to send again")
    target.add_argument("--automation", help="every finished delivery of this automation "
                        "created in the window (--since is required)")
    again.add_argument("--state", choices=FINISHED, help="only succeeded or only failed ones")
    _window(again)
    return again


def _window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=when, help="created at or after: 30m, 2h, 1d ago or "
                        "an ISO time (UTC unless it has an offset)")
    parser.add_argument("--until", type=when, help="created before: as --since")
