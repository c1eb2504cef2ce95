"""Request bodies as every service reads them: within a time limit, JSON nested at most
MAX_DEPTH deep with its integers exact, and HTML forms that must be UTF-8.

Every body goes through `read_body`, every JSON body through `read_json` (or `read_model`) and
every form through `read_form`: a hostile body is a 4xx here, never a 500 further on.
"""

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import orjson
from aiohttp import web
from multidict import MultiDictProxy
from pydantic import BaseModel, ValidationError

from shared.field_paths import field_path
from shared.form_values import INT64
from shared.forms import FieldError
from shared.web import BadRequest, RequestTimeout

M = TypeVar("M", bound=BaseModel)
# How long a request's body may take to arrive (set by new_app from the settings); unset: no
# limit of its own.
BODY_TIMEOUT = web.AppKey("body_timeout", float)
# Deeper than any body Casewire takes (an automation's nested conditions are a handful of
# levels), shallow enough for the recursive parsers and encoders behind it: Python's json
# (recursion limit 1,000) and orjson's encoder (254 levels).
MAX_DEPTH = 64
BIG_INTEGER = re.compile(rb"[0-9]{19}")


@contextlib.asynccontextmanager
async def body_deadline(request: web.Request) -> AsyncIterator[None]:
    """Reading the body inside must end within BODY_TIMEOUT, or it is a 408 `request_timeout`
    (a client trickling it byte by byte holds a connection and a task for nothing)."""
    try:
        async with asyncio.timeout(request.config_dict.get(BODY_TIMEOUT)):
            yield
    except TimeoutError as exc:
        raise RequestTimeout("the body did not arrive in time") from exc


async def read_body(request: web.Request) -> bytes:
    """The whole body, within BODY_TIMEOUT."""
    async with body_deadline(request):
        return await request.read()


def _items(node: dict[str, Any] | list[Any]) -> Iterator[tuple[str, Any]]:
    return iter(node.items()) if isinstance(node, dict) else (
        (str(n), item) for n, item in enumerate(node))


def _too_deep_under(value: Any, raw: bytes) -> str | None:
    """Where `value` nests deeper than MAX_DEPTH (containers within containers): the
    top-level key it does so under ("" for the body itself), or None if it does not."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return None  # brackets in strings count too: a bound, and free for most bodies
    level: list[tuple[Any, str]] = [(value, "")] if isinstance(value, dict | list) else []
    for _ in range(MAX_DEPTH):
        if not level:
            return None
        level = [(item, top or key) for node, top in level for key, item in _items(node)
                 if isinstance(item, dict | list)]
    return level[0][1] if level else None


def parse_json(raw: bytes | str) -> Any:
    """JSON text as Python values (integers exact, whatever their size), or a 400
    `invalid_json`: not JSON, nested deeper than MAX_DEPTH, or an integer over 4,300 digits."""
    text = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        parsed = orjson.loads(text)
        if (under := _too_deep_under(parsed, text)) is not None:
            raise BadRequest.one("invalid_json", f"JSON nested deeper than {MAX_DEPTH} levels",
                                 field=under or None)
        # orjson reads an integer beyond 64 bits (19 digits or more) as a float: read such a
        # body again, exactly, so 123456789012345678901234567890 does not become 1.23e+29.
        return json.loads(text) if BIG_INTEGER.search(text) else parsed
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise BadRequest.one("invalid_json", f"body is not valid JSON: {exc}") from exc


async def read_json(request: web.Request) -> Any:
    """The request body as JSON (see parse_json)."""
    return parse_json(await read_body(request))


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (path, value) inside a JSON document, without recursion."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        yield path, node
        items = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else ()
        stack.extend((f"{path}.{key}".lstrip("."), item) for key, item in items)


def big_ints(value: Any) -> list[str]:
    """Where `value` holds integers beyond 64 bits, which nothing downstream can keep."""
    return sorted(path for path, v in _walk(value)
                  if isinstance(v, int) and not isinstance(v, bool) and v not in INT64)


def refuse_big_ints(payload: Any) -> None:
    """A 400 `value_not_numeric` for every integer beyond 64 bits in a request body."""
    paths = big_ints(payload)
    if paths:
        raise BadRequest([FieldError(field=p or None, code="value_not_numeric",
                                     message="expected an integer within 64 bits")
                          for p in paths])


async def read_model(request: web.Request, model: type[M]) -> M:
    """Parse and validate a JSON body into `model`; every problem becomes one 400 error entry."""
    payload = await read_json(request)
    refuse_big_ints(payload)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise BadRequest([
            FieldError(field=field_path(e["loc"], payload), code="invalid", message=e["msg"])
            for e in exc.errors(include_url=False)
        ]) from exc


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | Any]:
    """An HTML form (urlencoded or multipart) within BODY_TIMEOUT; a 400 `invalid_form` if
    it is not UTF-8 or not a form at all."""
    try:
        async with body_deadline(request):
            return await request.post()
    except (UnicodeDecodeError, ValueError, AssertionError) as exc:
        raise BadRequest.one("invalid_form", "the form could not be read: expected "
                             "UTF-8 urlencoded or multipart data") from exc
