"""casestore's consumer: case commands, delivery records and receivers' answers, each once.

Every handler records the event id in processed_events in the same transaction as its effect,
so a redelivered message finds its id taken and changes nothing.
"""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import structlog

from services.casestore import cases, repo
from services.casestore.responses import write_response_data
from shared.errors import PermanentMessageError
from shared.events import (
    CASE_CREATE_REQUESTED,
    CASE_RESPONSE_DATA,
    DELIVERY_RECORDED,
    CaseCreateRequested,
    CaseResponseData,
    DeliveryRecorded,
    Envelope,
)

log = structlog.get_logger(__name__)

CONSUMER = "casestore"


class CommandConsumer:
    """Applies each event once: the processed-event row commits with its effect."""

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool
        self._handlers: dict[str, Callable[[Envelope], Awaitable[None]]] = {
            CASE_CREATE_REQUESTED: self.create_requested,
            DELIVERY_RECORDED: self.delivery_recorded,
            CASE_RESPONSE_DATA: self.response_data,
        }

    async def __call__(self, envelope: Envelope) -> None:
        handler = self._handlers.get(envelope.type)
        if handler is None:
            raise PermanentMessageError(f"casestore does not handle {envelope.type}")
        await handler(envelope)

    @contextlib.asynccontextmanager
    async def _first_time(self, envelope: Envelope) -> AsyncIterator[repo.Conn | None]:
        """A connection in a transaction that has claimed the event id; None for a duplicate."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await repo.mark_processed(conn, CONSUMER, envelope.id):
                log.info("duplicate_event_skipped")
                yield None
            else:
                yield conn

    async def create_requested(self, envelope: Envelope) -> None:
        command = CaseCreateRequested.model_validate(envelope.data)
        if envelope.form_id is None:
            raise PermanentMessageError("case.create_requested without form_id")
        async with self._first_time(envelope) as conn:
            if conn is None:
                return
            form = await repo.get_form(conn, envelope.form_id)
            if form is None:
                # Dead-lettered, not dropped: an operator can still recover the case.
                raise PermanentMessageError(f"form {envelope.form_id} no longer exists")
            row = await cases.create_case(
                conn, form, command.data, creator=command.creator, case_id=envelope.id,
                skip_triggers=command.skip_triggers, causation_id=str(envelope.id))
        log.info("case_created", case_id=str(row["id"]), case_number=row["case_number"],
                 form_id=form.id)

    async def delivery_recorded(self, envelope: Envelope) -> None:
        record = DeliveryRecorded.model_validate(envelope.data)
        async with self._first_time(envelope) as conn:
            if conn is None:
                return
            kept = await repo.record_delivery(conn, record)
        if not kept:
            # Deleting an automation deletes its log; a late record has nowhere to go.
            log.info("delivery_of_deleted_automation_dropped",
                     automation_id=str(record.automation_id),
                     delivery_id=str(record.delivery_id))

    async def response_data(self, envelope: Envelope) -> None:
        answer = CaseResponseData.model_validate(envelope.data)
        async with self._first_time(envelope) as conn:
            if conn is None:
                return
            await write_response_data(conn, answer, causation_id=str(envelope.id))
