"""returnDataURL: a receiver may POST its answer later to the signed URL its request carried."""

import uuid

import structlog
from aiohttp import web

from services.ingest.answers import Published, failure, publish
from services.ingest.handlers import read_object
from services.ingest.repo import automation_definition
from shared.automations import response_values
from shared.events import CASE_RESPONSE_DATA, CaseResponseData, new_event
from shared.service import POOL, SETTINGS
from shared.signing import UrlSigner
from shared.web import error_body, json_response

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


@routes.post(r"/return/{automation_id}/{case_id}/{delivery_id}/{depth:\d+}")
async def return_data(request: web.Request) -> web.Response:
    problem = UrlSigner(request.app[SETTINGS].signing_key).check(
        "POST", request.path, request.query.get("expires"), request.query.get("signature"))
    if problem == "expired":
        return json_response(error_body("expired", "this returnDataURL has expired (2 hours)"),
                             status=410)
    if problem is not None:
        return json_response(error_body("access_deny", "invalid returnDataURL signature"),
                             status=403)
    info = request.match_info
    automation_id = uuid.UUID(info["automation_id"])
    definition = await automation_definition(request.app[POOL], automation_id)
    if definition is None:
        return json_response(error_body("not_found", "the automation no longer exists"),
                             status=404)
    body = await read_object(request)
    if isinstance(body, web.Response):
        return body
    values = response_values(definition, body)
    if not values:
        keys = ", ".join(m.key for m in definition.action.response)
        return json_response(error_body("value_missing", f"none of the response keys ({keys}) "
                                        "is in the body"), status=400)
    answer = CaseResponseData(case_id=uuid.UUID(info["case_id"]), automation_id=automation_id,
                              delivery_id=uuid.UUID(info["delivery_id"]), values=values,
                              automation_depth=int(info["depth"]), source="return_url")
    outcome = await publish(request, new_event(CASE_RESPONSE_DATA, answer, form_id=None,
                                               case_id=answer.case_id))
    if outcome is not Published.CONFIRMED:
        return failure(outcome, "the answer")
    log.info("return_data_accepted", automation_id=str(automation_id),
             case_id=str(answer.case_id), fields=sorted(values))
    return json_response({})
