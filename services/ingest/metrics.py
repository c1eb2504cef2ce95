"""ingest's outcome of every case request on /metrics: accepted, or why not (its error code)."""

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import Counter

from shared.web import HTTPError

CASES = Counter("casewire_ingest_cases_total",
                "Case requests to incoming webhooks, by outcome: accepted, or the error code "
                "answered (rate_limited, unavailable, outcome_unknown, not_found, "
                "field_required, ...)", ["outcome"])
for _outcome in ("accepted", "rate_limited", "unavailable", "outcome_unknown"):
    CASES.labels(_outcome)

# Set on a request that turned out to be an auth-key call, not a case.
NOT_A_CASE = web.RequestKey("not_a_case", bool)
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _code(body: bytes | None) -> str:
    """The first error code of an error answer's body."""
    try:
        return str(orjson.loads(body or b"")["errors"][0]["code"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return "unknown"


def outcome(status: int, body: bytes | None) -> str:
    return "accepted" if status < 300 else _code(body)


def counted(handler: Handler) -> Handler:
    """Count the outcome of each request the handler answers (auth-key calls aside)."""

    async def count(request: web.Request) -> web.Response:
        try:
            response = await handler(request)
        except HTTPError as exc:
            CASES.labels(exc.errors[0].code).inc()
            raise
        except web.HTTPException as exc:
            CASES.labels(outcome(exc.status, exc.text.encode() if exc.text else None)).inc()
            raise
        except Exception:
            CASES.labels("internal_error").inc()  # answered 500 by the middleware
            raise
        if not request.get(NOT_A_CASE):
            body = response.body if isinstance(response.body, bytes) else None
            CASES.labels(outcome(response.status, body)).inc()
        return response

    return count
