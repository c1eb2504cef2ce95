"""ingest's error answers, and publishing with the answer that tells the client the truth."""

import enum

import orjson
import structlog
from aiohttp import web

from shared.errors import DependencyUnavailable, OutcomeUnknown
from shared.events import Envelope
from shared.service import PUBLISHER
from shared.web import error_body, json_response

log = structlog.get_logger(__name__)


def bad(code: str, message: str, field: str | None = None) -> web.Response:
    return json_response(error_body(code, message, field), status=400)


def not_found() -> web.HTTPNotFound:
    return web.HTTPNotFound(text=orjson.dumps(error_body("not_found", "unknown webhook URL"))
                            .decode(), content_type="application/json")


def unavailable(message: str) -> web.Response:
    """503 `unavailable`: nothing was created; the same request may simply be sent again."""
    return json_response(error_body("unavailable", message), status=503,
                         headers={"Retry-After": "1"})


def outcome_unknown() -> web.Response:
    """503 `outcome_unknown`: the broker may have the message; only a keyed retry is safe."""
    return json_response(error_body(
        "outcome_unknown", "the broker did not confirm in time: the case may or may not have "
        "been created; retry with the same Idempotency-Key to create it exactly once"),
        status=503, headers={"Retry-After": "1"})


class Published(enum.Enum):
    CONFIRMED = "confirmed"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"


async def publish(request: web.Request, event: Envelope) -> Published:
    """Publish with confirm; when the broker is known to be down, do not even try (and make no
    client wait out the publish timeout on a connection that is reconnecting)."""
    publisher = request.app[PUBLISHER]
    if not publisher.can_publish():
        log.warning("broker_down_not_published", event_type=event.type)
        return Published.NOT_SENT
    try:
        await publisher.publish(event)
    except OutcomeUnknown as exc:
        log.warning("publish_outcome_unknown", event_type=event.type, event_id=str(event.id),
                    error=str(exc))
        return Published.UNKNOWN
    except DependencyUnavailable as exc:
        log.warning("publish_failed", event_type=event.type, error=str(exc))
        return Published.NOT_SENT
    return Published.CONFIRMED


def failure(outcome: Published, what: str) -> web.Response:
    """The 503 for a publish that was not confirmed."""
    if outcome is Published.UNKNOWN:
        return outcome_unknown()
    return unavailable(f"{what} could not be accepted right now (nothing was created); "
                       "try again")
