"""Request bodies as ingest reads them: one JSON object (integers exact, see shared.web)."""

from typing import Any

from aiohttp import web

from shared.bodies import read_json
from shared.web import BadRequest, TooLarge


async def read_object(request: web.Request) -> dict[str, Any]:
    try:
        payload = await read_json(request)
    except web.HTTPRequestEntityTooLarge as exc:
        raise TooLarge("the body exceeds the size limit", code="body_too_large") from exc
    if not isinstance(payload, dict):
        raise BadRequest.one("invalid_json", "the body must be a JSON object of field id to value")
    return payload
