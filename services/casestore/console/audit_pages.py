"""The console's audit log: who changed what and when, newest first, by actor or target."""

from aiohttp import web

from services.casestore.console.render import page
from services.casestore.repo import audit as audit_rows
from shared.inputs import whole_number
from shared.service import POOL

routes = web.RouteTableDef()
PAGE_SIZE = 50


@routes.get("/audit-log")
async def audit_log(request: web.Request) -> web.Response:
    """As GET /api/audit-log; `before` is the last entry's id of the page before."""
    before = whole_number(request.query.get("before", ""), 1, 2**62)
    actor = request.query.get("actor", "").strip() or None
    target = request.query.get("target", "").strip() or None
    async with request.config_dict[POOL].acquire() as conn:
        rows = await audit_rows.list_entries(conn, limit=PAGE_SIZE + 1, before=before,
                                             actor=actor, target=target)
    entries = rows[:PAGE_SIZE]
    older = None
    if len(rows) > PAGE_SIZE:
        older = request.rel_url.update_query(before=str(entries[-1].id))
    return page(request, "audit_log.html", entries=entries, actor_filter=actor or "",
                target_filter=target or "", older=older)
