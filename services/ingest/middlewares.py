"""ingest's own middleware: an unexpected error is logged without the webhook token."""

import traceback

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from shared.logging import mask_secrets, masked
from shared.web import HTTPError, internal_error

log = structlog.get_logger(__name__)


@web.middleware
async def errors_without_tokens(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The shared edge middleware logs a failed request's path, and an ingest path holds
    a webhook token, a secret: the error is caught here first and logged with the token masked,
    in the path and in the traceback (an exception's message may quote it)."""
    try:
        return await handler(request)
    except (HTTPError, web.HTTPException):
        raise
    except Exception as exc:
        token = request.match_info.get("token", "")
        trace = "".join(traceback.format_exception(exc))
        log.error("request_failed", path=mask_secrets(request.path),
                  exception=trace.replace(token, masked(token)) if token else trace)
        return internal_error()
