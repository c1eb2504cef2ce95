"""Console pages of a form's incoming webhook: settings, URL, rotation, users, structure."""

import asyncpg
import orjson
from aiohttp import web
from pydantic import ValidationError

from services.casestore import webhook_tokens
from services.casestore.api.forms import announce_form, curl_example, load_form
from services.casestore.api.logins import LOGINS
from services.casestore.api.users import NewUser
from services.casestore.api.webhooks import hasher
from services.casestore.console.render import page, pydantic_errors, see_other, text, texts
from services.casestore.errors import found
from services.casestore.repo import Conn
from services.casestore.repo import access as access_rows
from services.casestore.webhook_tokens import TOKEN_SEAL
from shared.bodies import read_form
from shared.forms import FieldType, FormDefinition
from shared.service import POOL, SETTINGS

routes = web.RouteTableDef()


def _url(request: web.Request, hook: access_rows.WebhookRow | None) -> str | None:
    if hook is None:
        return None
    return webhook_tokens.url(request.config_dict[SETTINGS].public_base_url,
                              request.config_dict[TOKEN_SEAL].opened(hook))


async def _page(request: web.Request, conn: Conn, form: FormDefinition,
                status: int = 200, **context: object) -> web.Response:
    hook = await access_rows.get_webhook(conn, form.id)
    users = await access_rows.list_users(conn)
    url = _url(request, hook)
    return page(request, "webhook.html", status=status, form=form, hook=hook, url=url,
                users=users, curl=curl_example(url, form) if url else None, **context)


@routes.get("/forms/{form_id}/webhook")
async def show_webhook(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
        return await _page(request, conn, form)


@routes.post("/forms/{form_id}/webhook")
async def save_webhook(request: web.Request) -> web.Response:
    """Enable or disable, user authentication on or off; the token stays."""
    posted = await read_form(request)
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        form = await load_form(conn, request.match_info["form_id"])
        await webhook_tokens.save(conn, request.config_dict[TOKEN_SEAL], form.id,
                                  "enabled" in posted, "authenticate_user" in posted)
        await announce_form(conn, form.id, "webhook")
    raise see_other(f"/console/forms/{form.id}/webhook", notice="webhook_saved")


@routes.post("/forms/{form_id}/webhook/rotate")
async def rotate_webhook(request: web.Request) -> web.Response:
    posted = await read_form(request)
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        form = await load_form(conn, request.match_info["form_id"])
        if "confirm" not in posted:
            return await _page(request, conn, form, status=400, rotate_error=(
                "Tick the box to confirm: the current URL stops working at once."))
        found(await webhook_tokens.rotate(conn, request.config_dict[TOKEN_SEAL], form.id),
              "this form has no incoming webhook")
        await announce_form(conn, form.id, "webhook")
    raise see_other(f"/console/forms/{form.id}/webhook", notice="webhook_rotated")


@routes.post("/forms/{form_id}/webhook/users")
async def save_users(request: web.Request) -> web.Response:
    """Which users may get auth keys for this form; their other forms stay as they are."""
    allowed = set(texts(await read_form(request), "allowed"))
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        form = await load_form(conn, request.match_info["form_id"])
        for user in await access_rows.list_users(conn):
            forms = set(user.forms)
            wanted = forms | {form.id} if user.username in allowed else forms - {form.id}
            if wanted != forms and await access_rows.lock_user(conn, user.username):
                await access_rows.set_user_forms(conn, user.username, sorted(wanted))
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
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        form = await load_form(conn, request.match_info["form_id"])
        try:
            await access_rows.insert_user(conn, user.username, password_hash, [form.id])
        except asyncpg.UniqueViolationError:
            return await _user_problem(request, f"a user '{user.username}' exists already: "
                                       "tick it in the list above to allow it on this form")
    raise see_other(f"/console/forms/{form.id}/webhook", notice="user_created")


async def _user_problem(request: web.Request, problem: str) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
        return await _page(request, conn, form, status=400, user_error=problem)


def structure(form: FormDefinition, url: str | None) -> dict[str, object]:
    """The "Form Structure" download, as GET /api/forms/{id}/structure answers it."""
    return {
        "form": {"id": form.id, "name": form.name},
        "sections": [{"index": i, "name": s.name} for i, s in enumerate(form.sections)],
        "fields": [{"id": f.id, "label": f.label, "type": f.type, "section": f.section,
                    "mandatory": f.mandatory, "options": f.options,
                    "settable_by_incoming_webhook": f.section == 0 and f.type != FieldType.FILE}
                   for f in form.fields],
        "statuses": form.statuses,
        "incoming_webhook_url": url,
        "send_directly_as_json": curl_example(url or "https://yourWebhookUrl", form),
    }


@routes.get("/forms/{form_id}/structure.json")
async def download_structure(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
        hook = await access_rows.get_webhook(conn, form.id)
    body = orjson.dumps(structure(form, _url(request, hook)), option=orjson.OPT_INDENT_2)
    return web.Response(body=body, content_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="{form.id}-structure.json"'})
