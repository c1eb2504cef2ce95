"""Console pages of cases: a form's cases, and one case with its data, history, deliveries."""

from aiohttp import web

from services.casestore import cases
from services.casestore.console.render import page
from services.casestore.errors import found
from services.casestore.form_writes import load_form
from services.casestore.params import path_uuid
from services.casestore.repo import cases as case_rows
from services.casestore.repo import deliveries as delivery_rows
from shared.inputs import whole_number
from shared.service import POOL

routes = web.RouteTableDef()
PAGE_SIZE = 50


@routes.get("/forms/{form_id}/cases")
async def list_cases(request: web.Request) -> web.Response:
    """Newest first; `before` is the last case number of the page before."""
    status = request.query.get("status") or None
    async with request.config_dict[POOL].acquire() as conn:
        found = await cases.page_of_cases(
            conn, request.match_info["form_id"], status=status, limit=PAGE_SIZE,
            before=whole_number(request.query.get("before", ""), 1, 2**62))
    older = (request.rel_url.update_query(before=str(found.next_before))
             if found.next_before else None)
    return page(request, "cases.html", form=found.form, cases=found.cases, total=found.total,
                status_filter=status, older=older)


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
