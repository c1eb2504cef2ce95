"""ingest's own middleware: an unexpected error is logged without the webhook token."""

import traceback
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from services.ingest.tokens import masked, masked_path
from shared.web import json_response

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_without_tokens(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The shared correlation middleware logs a failed request's path, and an ingest path holds
    a webhook token, a secret: the error is caught here first and logged with the token masked,
    in the path and in the traceback (an exception's message may quote it)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        token = request.match_info.get("token", "")
        trace = "".join(traceback.format_exception(exc))
        log.error("request_failed", path=masked_path(request.path),
                  exception=trace.replace(token, masked(token)) if token else trace)
        return json_response({"errors": [{"code": "internal_error",
                                          "message": "internal error"}]}, status=500)
