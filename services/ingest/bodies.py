"""Request bodies as ingest reads them: one JSON object (integers exact, see shared.web)."""

from typing import Any

from aiohttp import web

from services.ingest.answers import bad
from shared.web import error_body, json_response, read_json


async def read_object(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        payload = await read_json(request)
    except web.HTTPRequestEntityTooLarge:
        return json_response(error_body("body_too_large", "the body exceeds the size limit"),
                             status=413)
    if not isinstance(payload, dict):
        return bad("invalid_json", "the body must be a JSON object of field id to value")
    return payload
