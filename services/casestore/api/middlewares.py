"""Translation of domain errors into HTTP answers, and a guard against NUL in paths and queries."""

from collections.abc import Awaitable, Callable

from aiohttp import web

from services.casestore.api.logins import HashingBusy, TooManyFailures
from services.casestore.errors import Conflict, RecordNotFound, ValidationFailed
from shared.web import error_body, json_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NUL = "\x00"


def _nul_refusal(request: web.Request) -> web.Response | None:
    """Postgres text cannot hold U+0000, so no id or filter containing it can match anything.

    Refused before any handler runs, so no query ever sees it (a 500 otherwise).
    """
    if NUL in request.path:
        return json_response(error_body("not_found", "nothing has that name"), status=404)
    for name, value in request.query.items():
        if NUL in name or NUL in value:
            return json_response(error_body(
                "invalid", "query values may not contain NUL (\\u0000) characters",
                name.replace(NUL, "\ufffd")), status=400)
    return None


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    refusal = _nul_refusal(request)
    if refusal is not None:
        return refusal
    try:
        return await handler(request)
    except RecordNotFound as exc:
        return json_response(error_body("not_found", str(exc)), status=404)
    except Conflict as exc:
        return json_response(error_body("conflict", str(exc)), status=409)
    except ValidationFailed as exc:
        return json_response({"errors": [e.model_dump() for e in exc.errors]}, status=400)
    except TooManyFailures as exc:
        return json_response(error_body("rate_limited", "too many failed logins for this user "
                                        "or client address; wait and try again"),
                             status=429, headers={"Retry-After": str(exc.retry_after)})
    except HashingBusy:
        return json_response(error_body("unavailable", "too many password checks at once; "
                                        "try again"), status=503, headers={"Retry-After": "1"})
