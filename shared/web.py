"""aiohttp pieces every service mounts: health, readiness, metrics, correlation ids, JSON."""

import hmac
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import orjson
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram
from pydantic import BaseModel, ValidationError

from shared.logging import bound_context, correlation_id_or_new
from shared.metrics import exposition

CORRELATION_HEADER = "X-Correlation-ID"
ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
READINESS: web.AppKey[ReadinessCheck] = web.AppKey("readiness")

log = structlog.get_logger(__name__)
M = TypeVar("M", bound=BaseModel)

HTTP_REQUESTS = Counter(
    "casewire_http_requests_total", "HTTP requests answered", ["service", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "casewire_http_request_seconds", "HTTP request duration", ["service", "route"]
)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers,
                        content_type="application/json")


def correlation_middleware(service: str) -> Any:
    """Bind a correlation id (taken from the request or new) to every log line of the request."""

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        cid = correlation_id_or_new(request.headers.get(CORRELATION_HEADER))
        route = request.match_info.route.resource.canonical if request.match_info.route.resource \
            else "unmatched"
        with bound_context(correlation_id=cid), HTTP_LATENCY.labels(service, route).time():
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                exc.headers[CORRELATION_HEADER] = cid
                HTTP_REQUESTS.labels(service, route, exc.status).inc()
                raise
            except Exception:
                log.exception("request_failed", route=route)  # a path may hold a token
                HTTP_REQUESTS.labels(service, route, 500).inc()
                return json_response({"errors": [{"code": "internal_error",
                                                  "message": "internal error"}]},
                                     status=500, headers={CORRELATION_HEADER: cid})
        response.headers[CORRELATION_HEADER] = cid
        HTTP_REQUESTS.labels(service, route, response.status).inc()
        return response

    return middleware


async def healthz(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        checks = await request.app[READINESS]()
    except Exception as exc:
        return json_response({"status": "unavailable", "error": repr(exc)}, status=503)
    ready = all(checks.values())
    return json_response({"status": "ok" if ready else "unavailable", "checks": checks},
                         status=200 if ready else 503)


async def metrics(_: web.Request) -> web.Response:
    return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_ops_routes(app: web.Application, readiness: ReadinessCheck) -> None:
    app[READINESS] = readiness
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"field": field, "code": code, "message": message}]}


def bad_request(errors: list[dict[str, Any]]) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=orjson.dumps({"errors": errors}).decode(),
                              content_type="application/json")


INT64 = range(-(2**63), 2**63)


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (path, value) inside a JSON document, without recursion (bodies nest deep)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        yield path, node
        items = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else ()
        stack.extend((f"{path}.{key}".lstrip("."), item) for key, item in items)


def _maybe_big_int(value: Any) -> bool:
    """orjson reads an integer beyond 64 bits as a float: is there a float that could be one?"""
    return any(isinstance(v, float) and v.is_integer() and abs(v) >= 2**63
               for _, v in _walk(value))


def _parse(raw: bytes) -> Any:
    parsed = orjson.loads(raw)
    if _maybe_big_int(parsed):
        # Read again, exactly: 123456789012345678901234567890 must not become 1.23e+29.
        return json.loads(raw)
    return parsed


async def read_json(request: web.Request) -> Any:
    """The request body as JSON (integers exact, whatever their size), or a 400 `invalid_json`."""
    raw = await request.read()
    try:
        return _parse(raw)
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise bad_request([{"field": None, "code": "invalid_json",
                            "message": f"body is not valid JSON: {exc}"}]) from exc


def big_ints(value: Any) -> list[str]:
    """Where `value` holds integers beyond 64 bits, which nothing downstream can keep."""
    return sorted(path for path, v in _walk(value)
                  if isinstance(v, int) and not isinstance(v, bool) and v not in INT64)


def refuse_big_ints(payload: Any) -> None:
    """A 400 `value_not_numeric` for every integer beyond 64 bits in a request body."""
    paths = big_ints(payload)
    if paths:
        raise bad_request([{"field": p or None, "code": "value_not_numeric",
                            "message": "expected an integer within 64 bits"} for p in paths])


async def read_model(request: web.Request, model: type[M]) -> M:
    """Parse and validate a JSON body into `model`; every problem becomes one 400 error entry."""
    payload = await read_json(request)
    refuse_big_ints(payload)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise bad_request([
            {"field": ".".join(str(p) for p in e["loc"]) or None, "code": "invalid",
             "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]) from exc


def admin_token_middleware(path_prefix: str, admin_token: str) -> Any:
    """Paths under `path_prefix` need `Authorization: Bearer <CASEWIRE_ADMIN_TOKEN>`."""
    expected = f"Bearer {admin_token}"

    @web.middleware
    async def check(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if request.path.startswith(path_prefix):
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return json_response(error_body("unauthorized", "missing or wrong bearer token"),
                                     status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check
