"""aiohttp pieces every service mounts: error answers, correlation ids, health, readiness,
metrics, the admin token (bodies are read by shared.bodies)."""

import math
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Self

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram

from shared.forms import MAX_ERRORS, FieldError, unlisted
from shared.inputs import header, same_secret
from shared.logging import bound_context, correlation_id_or_new
from shared.metrics import exposition

CORRELATION_HEADER = "X-Correlation-ID"
ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
READINESS: web.AppKey[ReadinessCheck] = web.AppKey("readiness")

log = structlog.get_logger(__name__)

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


# Every error answer is one of these, raised wherever the problem is found (the data layer's
# domain errors subclass them) and rendered once, by edge_middleware, as
# {"errors": [{"field", "code", "message"}, ...]} with its status and headers.

class HTTPError(Exception):
    """An error answer: `status`, one entry `{field, code, message}`, and `headers`.

    Each kind names its status and default code where it is declared:
    `class NotFound(HTTPError, status=404, code="not_found")`.
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init_subclass__(cls, status: int = 0, code: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status, cls.code = status or cls.status, code or cls.code

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors = [FieldError(field=field, code=code or self.code, message=message)]
        self.headers = headers or {}

    def response(self) -> web.Response:
        return json_response({"errors": [e.model_dump() for e in self.errors]},
                             status=self.status, headers=self.headers or None)


class BadRequest(HTTPError, status=400, code="invalid"):
    """400 with one entry per problem (the seed's codes, access_deny among them, are 400s),
    at most MAX_ERRORS of them and then how many more there were: a body of 95,000 unknown
    keys must not become an 8 MB answer (a validator that stopped early ends in its own
    count, hence the one entry to spare)."""

    def __init__(self, errors: list[FieldError]) -> None:
        if len(errors) > MAX_ERRORS + 1:
            errors = [*errors[:MAX_ERRORS], unlisted(len(errors) - MAX_ERRORS, "problems")]
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors

    @classmethod
    def one(cls, code: str, message: str, field: str | None = None) -> Self:
        return cls([FieldError(field=field, code=code, message=message)])


class Unauthorized(HTTPError, status=401, code="unauthorized"):
    """No valid bearer token."""


class SignatureRejected(HTTPError, status=401, code="signature_invalid"):
    """A signed incoming webhook's request without a valid signature: `signature_missing`,
    `signature_invalid` or `signature_expired` (outside the timestamp tolerance)."""


class Forbidden(HTTPError, status=403, code="forbidden"):
    """A signed URL that was tampered with (or, for file URLs, has expired)."""


class NotFound(HTTPError, status=404, code="not_found"):
    """Nothing has that name (or it may not be told apart from nothing)."""


class Conflict(HTTPError, status=409, code="conflict"):
    """The request clashes with what is stored."""


class Gone(HTTPError, status=410, code="expired"):
    """It existed, and no longer does (an expired returnDataURL)."""


class TooLarge(HTTPError, status=413, code="too_large"):
    """The body is over CASEWIRE_MAX_BODY_BYTES."""


class Unprocessable(HTTPError, status=422, code="unprocessable"):
    """Well formed, and refused all the same (an Idempotency-Key reused with another body)."""


class RequestTimeout(HTTPError, status=408, code="request_timeout"):
    """The request did not arrive in time; the connection is closed after this answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


class RateLimited(HTTPError, status=429, code="rate_limited"):
    """Try again after `retry_after` seconds (whole, at least 1)."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, headers={"Retry-After": str(self.retry_after)})


class BadGateway(HTTPError, status=502, code="bad_gateway"):
    """A service behind this one answered something unusable."""


class Unavailable(HTTPError, status=503, code="unavailable"):
    """`unavailable` (nothing happened) or `outcome_unknown` (it may have); retry later."""

    def __init__(self, message: str, *, code: str | None = None,
                 retry_after: int | None = 1) -> None:
        super().__init__(message, code=code, headers=None if retry_after is None
                         else {"Retry-After": str(retry_after)})


def internal_error() -> web.Response:
    """The 500 for whatever no handler expected; what went wrong is in the log, not the body."""
    return json_response({"errors": [{"code": "internal_error", "message": "internal error"}]},
                         status=500)


# What aiohttp's own refusals (no route, wrong method, body too large) are called in our shape.
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def _aiohttp_error(exc: web.HTTPException) -> web.StreamResponse:
    """aiohttp's own error answers are plain text: in our JSON shape, its headers kept (Allow)."""
    headers = {k: v for k, v in exc.headers.items()
               if k.lower() not in ("content-type", "content-length")}
    error = FieldError(field=None, code=HTTP_ERROR_CODES.get(exc.status, "error"),
                       message=exc.reason.lower())
    return json_response({"errors": [error.model_dump()]}, status=exc.status, headers=headers)


def edge_middleware(service: str) -> Middleware:
    """The outermost middleware: a correlation id (taken from the request or new) on every log
    line and answer, request metrics, and every error answer rendered: an HTTPError as its
    JSON body, anything unexpected as a logged 500."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        cid = correlation_id_or_new(request.headers.get(CORRELATION_HEADER))
        route = request.match_info.route.resource.canonical if request.match_info.route.resource \
            else "unmatched"
        with bound_context(correlation_id=cid), HTTP_LATENCY.labels(service, route).time():
            try:
                response = await handler(request)
            except HTTPError as exc:
                response = exc.response()
            except web.HTTPException as exc:  # aiohttp's own: no such route, a redirect
                if exc.status < 400 or exc.content_type == "application/json":
                    exc.headers[CORRELATION_HEADER] = cid
                    HTTP_REQUESTS.labels(service, route, exc.status).inc()
                    raise
                response = _aiohttp_error(exc)
            except Exception:
                log.exception("request_failed", route=route)  # a path may hold a token
                response = internal_error()
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


def admin_token_middleware(path_prefix: str, admin_token: str,
                           public: tuple[str, ...] = ()) -> Middleware:
    """Paths under `path_prefix` need `Authorization: Bearer <CASEWIRE_ADMIN_TOKEN>`, except
    those starting with one of `public`."""
    expected = f"Bearer {admin_token}"

    def guarded(path: str) -> bool:
        return path.startswith(path_prefix) and not any(path.startswith(p) for p in public)

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if guarded(request.path) and not same_secret(
                header(request, "Authorization") or "", expected):
            raise Unauthorized("missing or wrong bearer token",
                               headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check
