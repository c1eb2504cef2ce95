"""Bearer-token check for /api and translation of domain errors into HTTP answers."""

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from services.casestore.errors import Conflict, RecordNotFound, ValidationFailed
from shared.service import SETTINGS
from shared.web import error_body, json_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def check_admin_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        expected = f"Bearer {request.app[SETTINGS].admin_token}"
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return json_response(error_body("unauthorized", "missing or wrong bearer token"),
                                 status=401, headers={"WWW-Authenticate": "Bearer"})
    return await handler(request)


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
