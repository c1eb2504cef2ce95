"""Rendering console pages: the template context every page gets, notices, and form errors."""

import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from services.casestore.auth import ACTOR
from services.casestore.console.session import current
from shared.field_paths import field_path
from shared.forms import FieldError
from shared.inputs import whole_number

# What a redirect after a change tells the next page (`?notice=...`).
NOTICES = {
    "signed_out": "You are signed out.",
    "form_created": "The form was created.",
    "form_saved": "The form was saved.",
    "form_deleted": "The form was deleted.",
    "webhook_saved": "The incoming webhook was saved.",
    "webhook_rotated": "The webhook has a new URL; the old one no longer works.",
    "users_saved": "The allowed users were saved.",
    "user_created": "The user was created and allowed on this form.",
    "automation_created": "The automation was created.",
    "automation_saved": "The automation was saved.",
    "automation_enabled": "The automation is enabled.",
    "automation_disabled": "The automation is disabled.",
    "secret_rotated": "The signing secret was rotated.",
    "replayed": "The delivery will be sent again.",
    "replayed_many": "Deliveries replayed: {n}.",
}
Errors = dict[str, list[str]]
FormData = MultiDictProxy[str | bytes | Any]


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    session = current(request)
    notice = NOTICES.get(request.query.get("notice", ""), "")
    context = {"csrf": session.csrf if session else "", "signed_in": session is not None,
               "actor": request.get(ACTOR),
               "notice": notice.format(n=request.query.get("n", "?")), "path": request.path,
               **context}
    return aiohttp_jinja2.render_template(template, request, context, status=status)


def see_other(location: str, **query: str | int) -> web.HTTPSeeOther:
    """The answer to a successful POST: the page to show next, with its notice."""
    return web.HTTPSeeOther(f"{location}?{urlencode(query)}" if query else location)


def text(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def rows(form: FormData, name: str, most: int) -> range:
    """The rows a form says it has in its field `name` (a count), at most `most`."""
    return range(min(whole_number(text(form, name), 0, 2**31) or 0, most))


def texts(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.getall(name, []) if isinstance(v, str) and v.strip()]


def lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def place(errors: Iterable[FieldError], slot_of: Any) -> Errors:
    """Errors by the slot of the page they are shown at (`slot_of(field) -> slot`); "" is the
    top of the page."""
    placed: Errors = defaultdict(list)
    for error in errors:
        placed[slot_of(error.field or "") or ""].append(error.message)
    return dict(placed)


def pydantic_errors(exc: Any, given: Any) -> list[FieldError]:
    """A pydantic ValidationError (of the input `given`) as the API reports it: one entry per
    problem."""
    return [FieldError(field=field_path(e["loc"], given), code="invalid",
                       message=e["msg"].removeprefix("Value error, "))
            for e in exc.errors(include_url=False)]


INDEX = re.compile(r"^(\w+)[.\[](\d+)")


def indexed(field: str) -> tuple[str, int] | None:
    """`fields.2.label` or `when[2].fields` -> ("fields", 2)."""
    match = INDEX.match(field)
    return (match.group(1), int(match.group(2))) if match else None


def parse_time(raw: str) -> datetime | None:
    """A datetime-local input's value (or any ISO time), in UTC when no offset is given."""
    if not raw:
        return None
    when = datetime.fromisoformat(raw)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """`3 min ago`, `2 h ago`, `in 5 s`."""
    if when is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = f"{int(seconds // size)} {unit}"
            break
    else:
        amount = f"{int(seconds)} s"
    return f"in {amount}" if future else f"{amount} ago"


def utc(when: datetime | str | None) -> str:
    """A time as the console shows it; an API answer's ISO text too."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if when else ""
