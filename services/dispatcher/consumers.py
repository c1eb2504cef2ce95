"""The dispatcher's case-event consumer.

Outgoing-webhook evaluation builds on this (issue 3); for now every case event is received,
logged with its correlation id and acknowledged.
"""

import structlog

from shared.events import CASE_CREATED, CASE_DELETED, CASE_UPDATED, Envelope

log = structlog.get_logger(__name__)

CONSUMER = "dispatcher"
ROUTING_KEYS = (CASE_CREATED, CASE_UPDATED, CASE_DELETED)


async def on_case_event(envelope: Envelope) -> None:
    log.info("case_event_received", case_id=str(envelope.case_id), form_id=envelope.form_id)
