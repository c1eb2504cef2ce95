"""Console pages of cases: a form's cases, and one case with its data, history, deliveries."""

from aiohttp import web

from services.casestore.api.forms import load_form
from services.casestore.api.params import path_uuid
from services.casestore.console.render import page
from services.casestore.errors import found
from services.casestore.repo import cases as case_rows
from services.casestore.repo import deliveries as delivery_rows
from shared.inputs import whole_number
from shared.service import POOL

routes = web.RouteTableDef()
PAGE_SIZE = 50


@routes.get("/forms/{form_id}/cases")
async def list_cases(request: web.Request) -> web.Response:
    """Newest first; `before` is the last case number of the page before."""
    raw = request.query.get("before", "")
    before = whole_number(raw, 1, 2**62)
    status = request.query.get("status") or None
    async with request.config_dict[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        form = await load_form(conn, request.match_info["form_id"])
        rows = await case_rows.list_cases(conn, form.id, status=status, limit=PAGE_SIZE,
                                          before_number=before)
        total = await case_rows.count_cases(conn, form.id, status)
    older = None
    if len(rows) == PAGE_SIZE:
        older = request.rel_url.update_query(before=str(rows[-1].case_number))
    return page(request, "cases.html", form=form, cases=rows, total=total, status_filter=status,
                older=older)


@routes.get("/cases/{case_id}")
async def show_case(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        case = found(await case_rows.get_case(conn, path_uuid(request, "case_id", "case")),
                     "no case has that id")
        form = await load_form(conn, case.form_id)
        history = await case_rows.case_history(conn, case.id)
        deliveries = await delivery_rows.list_deliveries(
            conn, delivery_rows.DeliveryFilter(case_id=case.id), limit=100, before=None)
    return page(request, "case.html", form=form, case=case, history=history,
                deliveries=deliveries)
