"""Translation of domain errors into HTTP answers."""

from collections.abc import Awaitable, Callable

from aiohttp import web

from services.casestore.errors import Conflict, RecordNotFound, ValidationFailed
from shared.web import error_body, json_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RecordNotFound as exc:
        return json_response(error_body("not_found", str(exc)), status=404)
    except Conflict as exc:
        return json_response(error_body("conflict", str(exc)), status=409)
    except ValidationFailed as exc:
        return json_response({"errors": [e.model_dump() for e in exc.errors]}, status=400)
