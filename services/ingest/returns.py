"""returnDataURL: a receiver may POST its answer later to the signed URL its request carried."""

import uuid

import structlog
from aiohttp import web

from services.ingest.answers import Published, failure, publish
from services.ingest.bodies import read_object
from services.ingest.repo import automation_with_form
from shared import ingest_contract as contract
from shared.automations import AutomationDefinition, response_values
from shared.errors import DependencyUnavailable
from shared.event_payloads import CaseResponseData
from shared.events import CASE_RESPONSE_DATA, new_event
from shared.form_values import validate_case_data
from shared.forms import FieldError, FormDefinition
from shared.service import POOL, SETTINGS
from shared.signing import UrlSigner
from shared.web import BadRequest, Forbidden, Gone, NotFound, Unavailable, json_response

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


def _check_signature(request: web.Request) -> None:
    problem = UrlSigner(request.app[SETTINGS].signing_key).check(
        "POST", request.path, request.query.get("expires"), request.query.get("signature"))
    if problem == "expired":
        raise Gone("this returnDataURL has expired (2 hours)")
    if problem is not None:
        raise Forbidden("invalid returnDataURL signature", code="access_deny")


def _ids(request: web.Request) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID] | None:
    info = request.match_info
    try:
        return (uuid.UUID(info["automation_id"]), uuid.UUID(info["case_id"]),
                uuid.UUID(info["delivery_id"]))
    except ValueError:  # signed, so ours, but not a URL Casewire makes
        return None


def _rejected(definition: AutomationDefinition, errors: list[FieldError]) -> BadRequest:
    """Every value that does not fit, named by the receiver's key (its case field in the text).

    One bad value refuses the whole answer and writes nothing, so the receiver can fix it and
    post it again as a whole, instead of its good values landing while it never learns of the
    bad one.
    """
    key_of = {m.field: m.key for m in definition.action.response}
    return BadRequest([FieldError(field=key_of.get(e.field or "", e.field), code=e.code,
                                  message=f"{e.message} (case field '{e.field}')")
                       for e in errors])


@contract.serving(routes, contract.return_data)
async def return_data(request: web.Request) -> web.Response:
    _check_signature(request)
    ids = _ids(request)
    try:
        found = await automation_with_form(request.app[POOL], ids[0]) if ids else None
    except DependencyUnavailable as exc:
        raise Unavailable("the answer cannot be checked right now (nothing was written); "
                          "try again") from exc
    if ids is None or found is None:
        raise NotFound("the automation no longer exists")
    definition, form = found
    body = await read_object(request)
    return await _accept(request, ids, definition, form, response_values(definition, body))


async def _accept(request: web.Request, ids: tuple[uuid.UUID, uuid.UUID, uuid.UUID],
                  definition: AutomationDefinition, form: FormDefinition,
                  values: dict[str, object]) -> web.Response:
    if not values:
        keys = ", ".join(m.key for m in definition.action.response)
        raise BadRequest.one("value_missing", f"none of the response keys ({keys}) is in the body")
    # As casestore will write them: a receiver may fill or change a mandatory field, never
    # empty it.
    clean, errors = validate_case_data(form, values, check_mandatory=True, partial=True)
    if errors:
        raise _rejected(definition, errors)
    automation_id, case_id, delivery_id = ids
    answer = CaseResponseData(case_id=case_id, automation_id=automation_id,
                              delivery_id=delivery_id, values=clean,
                              automation_depth=int(request.match_info["depth"]),
                              source="return_url")
    outcome = await publish(request, new_event(CASE_RESPONSE_DATA, answer, form_id=None,
                                               case_id=case_id))
    if outcome is not Published.CONFIRMED:
        raise failure(outcome, "the answer")
    log.info("return_data_accepted", automation_id=str(automation_id), case_id=str(case_id),
             fields=sorted(clean))
    return json_response({})
