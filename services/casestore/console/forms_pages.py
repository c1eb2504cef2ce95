"""Console pages of forms: the list, a new form, and the editor of sections, fields, statuses."""

from aiohttp import web

from services.casestore import form_writes
from services.casestore.auth import actor_of
from services.casestore.console import form_editor
from services.casestore.console.render import page, see_other
from services.casestore.errors import Conflict
from services.casestore.form_writes import load_form
from services.casestore.repo import stats as stats_rows
from shared.bodies import read_form
from shared.service import POOL

routes = web.RouteTableDef()


@routes.get("/forms", name="forms")
async def list_forms(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        forms = await stats_rows.form_overview(conn)
    return page(request, "forms.html", forms=forms)


def _editor_page(request: web.Request, editor: form_editor.Editor, *, new: bool,
                 status: int = 200) -> web.Response:
    return page(request, "form_edit.html", status=status, editor=editor, new=new,
                types=form_editor.TYPES, title="New form" if new else f"Form {editor.name}")


@routes.get("/forms/new")
async def new_form(request: web.Request) -> web.Response:
    return _editor_page(request, form_editor.Editor().with_blank_rows(3), new=True)


@routes.post("/forms/new")
async def create_form(request: web.Request) -> web.Response:
    editor = form_editor.read(await read_form(request))
    if "more" in await read_form(request):
        return _editor_page(request, editor.with_blank_rows(3), new=True)
    form = form_editor.validate(editor)
    if form is None:
        return _editor_page(request, editor, new=True, status=400)
    try:
        async with request.config_dict[POOL].acquire() as conn, conn.transaction():
            await form_writes.create(conn, actor_of(request), form)
    except Conflict as exc:
        editor.errors = {"id": [str(exc)]}
        return _editor_page(request, editor, new=True, status=409)
    raise see_other(f"/console/forms/{form.id}", notice="form_created")


@routes.get("/forms/{form_id}")
async def edit_form(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        form = await load_form(conn, request.match_info["form_id"])
    return _editor_page(request, form_editor.Editor.of(form), new=False)


@routes.post("/forms/{form_id}")
async def save_form(request: web.Request) -> web.Response:
    form_id = request.match_info["form_id"]
    editor = form_editor.read(await read_form(request), form_id)
    if "more" in await read_form(request):
        return _editor_page(request, editor.with_blank_rows(3), new=False)
    form = form_editor.validate(editor)
    if form is None:
        return _editor_page(request, editor, new=False, status=400)
    async with request.config_dict[POOL].acquire() as conn, conn.transaction():
        await form_writes.replace(conn, actor_of(request), form)
    raise see_other(f"/console/forms/{form.id}", notice="form_saved")


@routes.post("/forms/{form_id}/delete")
async def delete_form(request: web.Request) -> web.Response:
    """Delete the form; one with cases only once the box that deletes them too is ticked."""
    posted = await read_form(request)
    form_id = request.match_info["form_id"]
    async with request.config_dict[POOL].acquire() as conn:
        try:
            async with conn.transaction():
                await form_writes.delete(conn, actor_of(request), form_id,
                                         with_cases="with_cases" in posted)
        except Conflict as exc:
            editor = form_editor.Editor.of(await load_form(conn, form_id))
            editor.errors = {"delete": [str(exc).replace(" (?with_cases=true)", "")]}
            return _editor_page(request, editor, new=False, status=409)
    raise see_other("/console/forms", notice="form_deleted")
