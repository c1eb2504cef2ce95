"""The console as an aiohttp sub-application: the guard every page passes, errors as pages,
and the security headers every answer carries (signing in and out: sign_in.py)."""

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
import orjson
from aiohttp import web

from services.casestore.actors import BOOTSTRAP, Actor, role_of
from services.casestore.auth import ACTOR, allowed
from services.casestore.console import (
    audit_pages,
    automation_actions,
    automations_pages,
    cases_pages,
    deliveries_pages,
    forms_pages,
    health,
    sign_in,
    webhook_pages,
)
from services.casestore.console.render import ago, page, see_other, utc
from services.casestore.console.session import (
    COOKIE,
    SESSION,
    SESSION_KEYS,
    Session,
    SessionKeys,
    active,
    csrf_ok,
)
from services.casestore.console.sign_in import PREFIX, SIGN_INS, SignIns
from services.casestore.errors import Conflict, RecordNotFound, ValidationFailed
from services.casestore.repo import accounts as account_rows
from shared.service import POOL
from shared.settings import Settings
from shared.web import HTTPError

HERE = Path(__file__).parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _public(request: web.Request) -> bool:
    return request.path in (PREFIX, f"{PREFIX}/sign-in") or request.path.startswith(
        f"{PREFIX}/static/")


def _same_origin(request: web.Request) -> bool:
    """A browser names the page a form was sent from; another site's page is refused."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def refused(request: web.Request, message: str, status: int = 403) -> web.Response:
    return page(request, "message.html", status=status, title="Refused", message=message)


async def _actor(request: web.Request, session: Session | None) -> Actor | None:
    """Who the session signs in: the bootstrap admin (the admin token), or an account as it is
    now (None if it was disabled or deleted since: signed out)."""
    if session is None:
        return None
    if session.username is None:
        return Actor(BOOTSTRAP, "admin", "console")
    async with request.config_dict[POOL].acquire() as conn:
        account = await account_rows.get_account(conn, session.username)
    if account is None or account.disabled:
        return None
    return Actor(account.username, role_of(account.role), "console")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Signed-out visitors see only the sign-in page; every change needs the CSRF token and an
    editor (an admin for what only admins do), but signing out."""
    session = await active(request)
    actor = await _actor(request, session)
    session = session if actor is not None else None
    request[SESSION] = session
    if actor is not None:
        request[ACTOR] = actor
    if request.method not in ("GET", "HEAD"):
        if not _same_origin(request):
            return refused(request, "This form was sent from another site.")
        if not _public(request) and (session is None or not await csrf_ok(request, session)):
            return refused(request, "This form has expired or did not come from the console; "
                                    "go back, reload the page and try again.")
    if session is None and not _public(request):
        raise see_other(f"{PREFIX}/sign-in", next=request.path_qs)
    if actor is not None and not _public(request) and not allowed(actor, request):
        return refused(request, f"Your role ({actor.role}) may look, not change this.")
    return await handler(request)


@web.middleware
async def errors_as_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RecordNotFound as exc:
        return page(request, "message.html", status=404, title="Not found", message=str(exc))
    except Conflict as exc:
        return page(request, "message.html", status=409, title="Not done", message=str(exc))
    except ValidationFailed as exc:
        return page(request, "message.html", status=400, title="Not done",
                    message="; ".join(e.message for e in exc.errors))
    except web.HTTPNotFound:
        return page(request, "message.html", status=404, title="Not found",
                    message="There is no such page.")
    except HTTPError as exc:  # a bad form, too many sign-ins: its status, headers and code
        response = page(request, "message.html", status=exc.status, title="Refused",
                        message=str(exc), code=exc.errors[0].code)
        response.headers.update(exc.headers)
        return response


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)
    if response.content_type == "text/html":
        response.headers["Cache-Control"] = "no-store"


def _pretty(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


FILTERS: dict[str, Callable[..., str]] = {"utc": utc, "ago": ago, "pretty": _pretty}


def create_console(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[guard, errors_as_pages])
    app[SESSION_KEYS] = SessionKeys.derive(settings.signing_key, settings.admin_token)
    app[SIGN_INS] = SignIns(settings)
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"),
                         autoescape=True,
                         filters=FILTERS)
    app.on_response_prepare.append(security_headers)
    for module in (sign_in, health, forms_pages, webhook_pages, automations_pages,
                   automation_actions, deliveries_pages, cases_pages, audit_pages):
        app.router.add_routes(module.routes)
    app.router.add_static("/static/", HERE / "static")
    return app


def mount(app: web.Application, settings: Settings) -> None:
    """Serve the console under /console."""
    app.add_subapp(PREFIX, create_console(settings))


__all__ = ["COOKIE", "create_console", "mount"]
