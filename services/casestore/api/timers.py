"""What the scheduler will fire: the timers of a case, and of an automation (paged)."""

from aiohttp import web

from services.casestore.api.answers import AutomationTimers, CaseTimers
from services.casestore.errors import found
from services.casestore.params import invalid, path_uuid, query_int
from services.casestore.repo import automations as automation_rows
from services.casestore.repo import cases as case_rows
from services.casestore.repo import timers as timer_rows
from shared.openapi import Param, operation
from shared.service import POOL
from shared.web import json_response

routes = web.RouteTableDef()


@routes.get("/api/cases/{case_id}/timers")
@operation("The timers of a case's time-based triggers, soonest first", tags=("timers",),
           responses={200: CaseTimers}, path_schemas={"case_id": {"format": "uuid"}})
async def case_timers(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        case = found(await case_rows.get_case(conn, path_uuid(request, "case_id", "case")),
                     "no case has that id")
        rows = await timer_rows.list_timers(conn, case_id=case.id, limit=1000)
    return json_response({"timers": [r.to_api() for r in rows]})


@routes.get("/api/automations/{automation_id}/timers")
@operation("The timers of an automation, soonest first", tags=("timers",),
           responses={200: AutomationTimers}, path_schemas={"automation_id": {"format": "uuid"}},
           params=(Param("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                   Param("after", {"type": "integer"}, "next_after of the previous page")))
async def automation_timers(request: web.Request) -> web.Response:
    """Soonest first; page with `limit` (1-500, default 100) and `after=<next_after>`."""
    limit = query_int(request, "limit", 100, 500) or 100
    after_id = query_int(request, "after", None, 2**62)
    async with request.app[POOL].acquire() as conn:
        automation = found(await automation_rows.get_automation(
            conn, path_uuid(request, "automation_id", "automation")), "no automation has that id")
        after = None
        if after_id is not None:
            last = await timer_rows.get_timer(conn, after_id)
            if last is None:
                raise invalid("after", "no timer has that id")
            after = (last.due_at, last.id)
        rows = await timer_rows.list_timers(conn, automation_id=automation.id, limit=limit,
                                            after=after)
    return json_response({"timers": [r.to_api() for r in rows],
                          "next_after": rows[-1].id if len(rows) == limit else None})
