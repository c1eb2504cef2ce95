"""Publishing with the answer that tells the client the truth when the broker did not confirm."""

import enum

import structlog
from aiohttp import web

from shared.errors import DependencyUnavailable, OutcomeUnknown
from shared.events import Envelope
from shared.service import PUBLISHER
from shared.web import NotFound, Unavailable

log = structlog.get_logger(__name__)


def unknown_webhook() -> NotFound:
    return NotFound("unknown webhook URL")


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


def failure(outcome: Published, what: str) -> Unavailable:
    """The 503 for a publish that was not confirmed: `outcome_unknown` if the broker may have
    the message (only a keyed retry is safe), else `unavailable` (nothing was created)."""
    if outcome is Published.UNKNOWN:
        return Unavailable("the broker did not confirm in time: the case may or may not have "
                           "been created; retry with the same Idempotency-Key to create it "
                           "exactly once", code="outcome_unknown")
    return Unavailable(f"{what} could not be accepted right now (nothing was created); "
                       "try again")
