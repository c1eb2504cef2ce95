"""Console pages of a form's incoming webhook: settings, URL, rotation, users, structure."""

import orjson
from aiohttp import web
from pydantic import ValidationError

from services.casestore import webhook_writes
from services.casestore.auth import actor_of
from services.casestore.console.render import page, pydantic_errors, see_other, text, texts
from services.casestore.errors import Conflict
from services.casestore.form_structure import curl_example, structure
from services.casestore.form_writes import load_form
from services.casestore.logins import LOGINS, hasher
from services.casestore.repo import Conn
from services.casestore.repo import access as access_rows
from services.casestore.webhook_writes import NewUser, WebhookKeys, WebhookSettings
from shared.bodies import read_form
from shared.forms import FormDefinition
from shared.service import POOL

routes = web.RouteTableDef()


def _url(request: web.Request, hook: access_rows.WebhookRow | None) -> str | None:
    """The webhook's URL, its token "***" to a viewer."""
    if hook is None:
        return None
    return webhook_writes.url(WebhookKeys.of(request), hook,
                              secrets=actor_of(request).sees_secrets)


async def _page(request: web.Request, conn: Conn, form: FormDefinition,
                status: int = 200, **context: object) -> web.Response:
    hook = await access_rows.get_webhook(conn, form.id)
    users = await access_rows.list_users(conn)
    url = _url(request, hook)
    return page(request, "webhook.html", status=status, form=form, hook=hook, url=url,
                users=users, curl=curl_example(url, form) if url else None,
                secrets=actor_of(request).sees_secrets, **context)


@routes.get("/forms/{form_id}/webhook")
async def show_webhook(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
        return await _page(request, conn, form)


@routes.post("/forms/{form_id}/webhook")
async def save_webhook(request: web.Request) -> web.Response:
    """Enable or disable, user authentication on or off; the token stays."""
    posted = await read_form(request)
    settings = WebhookSettings(enabled="enabled" in posted,
                               authenticate_user="authenticate_user" in posted)
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        row = await webhook_writes.save(conn, actor_of(request), WebhookKeys.of(request),
                                        request.match_info["form_id"], settings)
    raise see_other(f"/console/forms/{row.form_id}/webhook", notice="webhook_saved")


@routes.post("/forms/{form_id}/webhook/rotate")
async def rotate_webhook(request: web.Request) -> web.Response:
    posted = await read_form(request)
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        form = await load_form(conn, request.match_info["form_id"])
        if "confirm" not in posted:
            return await _page(request, conn, form, status=400, rotate_error=(
                "Tick the box to confirm: the current URL stops working at once."))
        await webhook_writes.rotate(conn, actor_of(request), WebhookKeys.of(request), form.id)
    raise see_other(f"/console/forms/{form.id}/webhook", notice="webhook_rotated")


@routes.post("/forms/{form_id}/webhook/users")
async def save_users(request: web.Request) -> web.Response:
    """Which users may get auth keys for this form; their other forms stay as they are."""
    allowed = set(texts(await read_form(request), "allowed"))
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        form = await load_form(conn, request.match_info["form_id"])
        await webhook_writes.allow_on_form(conn, actor_of(request), form.id, allowed)
    raise see_other(f"/console/forms/{form.id}/webhook", notice="users_saved")


@routes.post("/forms/{form_id}/webhook/users/new")
async def create_user(request: web.Request) -> web.Response:
    """A new user, allowed on this form (as POST /api/users with this form)."""
    posted = await read_form(request)
    try:
        user = NewUser(username=text(posted, "username"),
                       password=str(posted.get("password", "")), forms=[])
    except ValidationError as exc:
        return await _user_problem(request, "; ".join(
            f"{e.field}: {e.message}" for e in pydantic_errors(exc, dict(posted))))
    password_hash = await request.config_dict[LOGINS].hash(hasher.hash, user.password)
    form_id = request.match_info["form_id"]
    try:
        async with request.config_dict[POOL].acquire() as conn, conn.transaction():
            form = await load_form(conn, form_id)
            await webhook_writes.create_user(conn, actor_of(request), user.username,
                                             password_hash, [form.id])
    except Conflict:
        return await _user_problem(request, f"a user '{user.username}' exists already: "
                                   "tick it in the list above to allow it on this form")
    raise see_other(f"/console/forms/{form_id}/webhook", notice="user_created")


async def _user_problem(request: web.Request, problem: str) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
        return await _page(request, conn, form, status=400, user_error=problem)


@routes.get("/forms/{form_id}/structure.json")
async def download_structure(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
        hook = await access_rows.get_webhook(conn, form.id)
    body = orjson.dumps(structure(form, _url(request, hook)), option=orjson.OPT_INDENT_2)
    return web.Response(body=body, content_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="{form.id}-structure.json"'})
