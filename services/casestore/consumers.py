"""casestore's command consumer: turns case.create_requested into exactly one case."""

import asyncpg
import structlog

from services.casestore import cases, repo
from shared.errors import PermanentMessageError
from shared.events import CASE_CREATE_REQUESTED, CaseCreateRequested, Envelope

log = structlog.get_logger(__name__)

CONSUMER = "casestore"
ROUTING_KEYS = (CASE_CREATE_REQUESTED,)


class CommandConsumer:
    """Applies each command once: the processed-event row commits with its effect."""

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    async def __call__(self, envelope: Envelope) -> None:
        if envelope.type != CASE_CREATE_REQUESTED:
            raise PermanentMessageError(f"casestore does not handle {envelope.type}")
        await self.create_requested(envelope)

    async def create_requested(self, envelope: Envelope) -> None:
        command = CaseCreateRequested.model_validate(envelope.data)
        if envelope.form_id is None:
            raise PermanentMessageError("case.create_requested without form_id")
        async with self._pool.acquire() as conn, conn.transaction():
            if not await repo.mark_processed(conn, CONSUMER, envelope.id):
                log.info("duplicate_event_skipped")
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
