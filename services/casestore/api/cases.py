"""Cases through the admin API: they go through the same events as webhook-created cases."""

import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.casestore import cases
from services.casestore.api.answers import Case, CaseList, CaseWithHistory
from services.casestore.errors import ValidationFailed, found
from services.casestore.form_writes import load_form
from services.casestore.params import path_uuid, query_int
from services.casestore.repo import cases as case_rows
from shared.bodies import read_model
from shared.form_values import validate_case_data
from shared.openapi import Empty, Param, operation
from shared.service import POOL
from shared.web import json_response

routes = web.RouteTableDef()
ADMIN_AUTHOR = "Admin API"


class NewCaseBody(BaseModel):
    """The body of POST /api/forms/{form_id}/cases."""

    model_config = ConfigDict(extra="forbid")
    data: dict[str, Any] = Field(default_factory=dict)
    status: str | None = None
    creator: str = ADMIN_AUTHOR


class CasePatchBody(BaseModel):
    """The body of PATCH /api/cases/{case_id}: only what it names changes."""

    model_config = ConfigDict(extra="forbid")
    data: dict[str, Any] = Field(default_factory=dict)
    status: str | None = None
    author: str = ADMIN_AUTHOR


def _case_id(request: web.Request) -> uuid.UUID:
    return path_uuid(request, "case_id", "case")


@routes.get("/api/forms/{form_id}/cases")
@operation("The form's cases, newest first", tags=("cases",), responses={200: CaseList},
           params=(Param("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                   Param("before", {"type": "integer", "minimum": 1, "maximum": 2**62},
                         "next_before of the previous page"),
                   Param("status", {"type": "string"})))
async def list_cases(request: web.Request) -> web.Response:
    """Newest first; page with `limit` and `before` (the last case number of the previous page)."""
    limit = query_int(request, "limit", 50, 500) or 50
    before = query_int(request, "before", None, 2**62)
    async with request.app[POOL].acquire() as conn:
        found = await cases.page_of_cases(conn, request.match_info["form_id"],
                                          status=request.query.get("status"), limit=limit,
                                          before=before)
    return json_response({"cases": [r.to_api() for r in found.cases], "total": found.total,
                          "next_before": found.next_before})


@routes.post("/api/forms/{form_id}/cases")
@operation("Create a case (every section allowed)", body=NewCaseBody, tags=("cases",),
           responses={201: Case})
async def create_case(request: web.Request) -> web.Response:
    body = await read_model(request, NewCaseBody)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        form = await load_form(conn, request.match_info["form_id"])
        clean, errors = validate_case_data(form, body.data, check_mandatory=True)
        if errors:
            raise ValidationFailed(errors)
        row = await cases.create_case(conn, form, cases.NewCase(
            clean, creator=body.creator, status=body.status))
    return json_response(row.to_api(), status=201)


@routes.get("/api/cases/{case_id}")
@operation("A case with its history", tags=("cases",), responses={200: CaseWithHistory},
           path_schemas={"case_id": {"format": "uuid"}})
async def get_case(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = found(await case_rows.get_case(conn, _case_id(request)), "no case has that id")
        history = await case_rows.case_history(conn, row.id)
    return json_response({**row.to_api(), "history": [h.to_api() for h in history]})


@routes.patch("/api/cases/{case_id}")
@operation("Change the fields and status it names", body=CasePatchBody, tags=("cases",),
           responses={200: Case}, path_schemas={"case_id": {"format": "uuid"}})
async def patch_case(request: web.Request) -> web.Response:
    body = await read_model(request, CasePatchBody)
    case_id = _case_id(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        current, form = found(await cases.load_locked(conn, case_id), f"case {case_id} not found")
        change = cases.plan_update(current, form, cases.check_patch(form, current, body.data),
                                   body.status)
        row = await cases.apply(conn, change, body.author)
    return json_response(row.to_api())


@routes.delete("/api/cases/{case_id}")
@operation("Delete a case; emits case.deleted", tags=("cases",), responses={200: Empty},
           path_schemas={"case_id": {"format": "uuid"}})
async def delete_case(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await cases.delete_case(conn, _case_id(request), author=ADMIN_AUTHOR)
    return json_response({})
