"""A guard against NUL in paths and queries (every other error answer is shared.web's)."""

from aiohttp import web
from aiohttp.typedefs import Handler

from shared.web import BadRequest, NotFound

NUL = "\x00"


@web.middleware
async def refuse_nul(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Postgres text cannot hold U+0000, so no id or filter containing it can match anything.

    Refused before any handler runs, so no query ever sees it (a 500 otherwise).
    """
    if NUL in request.path:
        raise NotFound("nothing has that name")
    for name, value in request.query.items():
        if NUL in name or NUL in value:
            raise BadRequest.one("invalid", "query values may not contain NUL (\\u0000) "
                                 "characters", name.replace(NUL, "\ufffd"))
    return await handler(request)
