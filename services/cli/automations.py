"""`casewire automations list|enable|disable`, through casestore's admin API."""

import argparse
from typing import Any

from services.cli.api import call_api
from services.cli.output import say, table
from shared.settings import Settings


def _triggers(automation: dict[str, Any]) -> str:
    return ", ".join(str(t.get("event") or next(iter(t), "?")) for t in automation["when"])


def _state(automation: dict[str, Any]) -> str:
    if automation["enabled"]:
        return "enabled"
    reason = automation.get("disabled_reason")
    return f"disabled ({reason})" if reason else "disabled"


async def _form_ids(settings: Settings, form: str | None) -> list[str]:
    if form is not None:
        return [form]
    return [f["id"] for f in (await call_api(settings, "GET", "/api/forms"))["forms"]]


async def list_automations(settings: Settings, args: argparse.Namespace) -> int:
    rows = []
    for form_id in await _form_ids(settings, args.form):
        found = await call_api(settings, "GET", f"/api/forms/{form_id}/automations")
        rows += [(a["id"], form_id, a["name"], _state(a), a["health"]["state"], _triggers(a),
                  a["action"]["settings"]["url"]) for a in found["automations"]]
    table(("id", "form", "name", "state", "endpoint", "when", "url"), rows,
          empty="no automations" + (f" on form {args.form}" if args.form else ""))
    return 0


async def switch(settings: Settings, args: argparse.Namespace) -> int:
    reason = {"json": {"reason": args.reason}} if args.action == "disable" else {}
    found = await call_api(settings, "POST", f"/api/automations/{args.id}/{args.action}",
                           **reason)
    say(f"automation {found['id']} ({found['name']}) {_state(found)}")
    return 0


def add_parsers(sub: Any) -> None:
    parser = sub.add_parser("automations", help="list automations, enable or disable one")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every automation (of one form with --form)")
    listing.add_argument("--form", help="only this form's")
    actions.add_parser("enable", help="switch on (what waited is sent)").add_argument("id")
    disable = actions.add_parser("disable", help="switch off (one disabled already keeps the "
                                 "reason it was disabled for)")
    disable.add_argument("id")
    disable.add_argument("--reason", default="disabled with the casewire CLI",
                         help="why, as the API and the console show it")


async def automations(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "list":
        return await list_automations(settings, args)
    return await switch(settings, args)
