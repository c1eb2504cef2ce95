"""Request bodies as ingest reads them: one JSON object, integers exact."""

import json
import re
from typing import Any

from aiohttp import web

from services.ingest.answers import bad
from shared.web import error_body, json_response, read_json

# orjson reads an integer beyond 64 bits (19 digits may be) as a float, which a number field
# would then accept, rounded. A body with such a run of digits is read again by the standard
# library, which keeps integers exact, so validation sees (and refuses) the real value.
LONG_DIGITS = re.compile(rb"\d{19}")


async def read_object(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        payload = await read_json(request)
        if isinstance(payload, dict):
            payload = _exact(await request.read(), payload)
    except web.HTTPRequestEntityTooLarge:
        return json_response(error_body("body_too_large", "the body exceeds the size limit"),
                             status=413)
    except (ValueError, RecursionError):
        # Python refuses integers of more than 4,300 digits, and nesting deeper than its stack.
        return bad("invalid_json", "the body has a number too long or nesting too deep to read")
    if not isinstance(payload, dict):
        return bad("invalid_json", "the body must be a JSON object of field id to value")
    return payload


def _exact(raw: bytes, payload: dict[str, Any]) -> Any:
    return json.loads(raw) if LONG_DIGITS.search(raw) else payload
