"""Every write of an automation, for the admin API and the console alike.

Each runs in the caller's transaction and keeps what hangs off an automation in step: its
timers (time-based triggers), the delivery scheduler, the deliveries still waiting.
"""

import uuid

from services.casestore import timers
from services.casestore.automations import stored_definition, url_problems
from services.casestore.errors import ValidationFailed, found
from services.casestore.repo import Conn
from services.casestore.repo import automations as automation_rows
from services.casestore.repo import deliveries as delivery_rows
from services.casestore.repo import schedule as schedule_rows
from shared.addresses import AddressPolicy
from shared.automation_checks import check_against_form
from shared.automations import AutomationDefinition
from shared.crypto import SecretBox
from shared.forms import FormDefinition
from shared.signing import new_webhook_secret

NO_AUTOMATION = "no automation has that id"


def check(definition: AutomationDefinition, form: FormDefinition,
          policy: AddressPolicy) -> None:
    """ValidationFailed listing every problem of the definition on this form."""
    errors = [*check_against_form(definition, form), *url_problems(definition, policy)]
    if errors:
        raise ValidationFailed(errors)


async def create(conn: Conn, box: SecretBox, form_id: str, definition: AutomationDefinition,
                 enabled: bool) -> automation_rows.AutomationRow:
    row = await automation_rows.insert_automation(
        conn, uuid.uuid4(), form_id, stored_definition(definition, None, box), enabled,
        box.encrypt(new_webhook_secret()))
    await timers.automation_saved(conn, row.id, definition, row.enabled)
    return row


async def replace(conn: Conn, box: SecretBox, current: automation_rows.AutomationRow,
                  definition: AutomationDefinition,
                  enabled: bool | None) -> automation_rows.AutomationRow:
    """The new definition (`enabled` too if given). Every write re-encrypts with the current
    key, so a legacy plaintext row is encrypted too."""
    row = found(await automation_rows.update_automation(
        conn, current.id, definition=stored_definition(definition, current.definition, box),
        enabled=enabled, secret=box.rotate(current.secret)), NO_AUTOMATION)
    await timers.automation_saved(conn, row.id, definition, row.enabled)
    return row


async def set_enabled(conn: Conn, automation_id: uuid.UUID, enabled: bool,
                      reason: str) -> automation_rows.AutomationRow:
    """Enabling sends what waited meanwhile, starting with a healthy endpoint."""
    row = found(await automation_rows.set_enabled(conn, automation_id, enabled, reason),
                NO_AUTOMATION)
    await timers.automation_saved(conn, row.id, AutomationDefinition.model_validate(
        row.definition), row.enabled)
    await schedule_rows.wake_scheduler(conn)
    return row


async def rotate_secret(conn: Conn, box: SecretBox, automation_id: uuid.UUID,
                        overlap_hours: float) -> automation_rows.AutomationRow:
    """The old secret keeps signing beside the new one for `overlap_hours`."""
    return found(await automation_rows.rotate_secret(
        conn, automation_id, box.encrypt(new_webhook_secret()), overlap_hours * 3600),
        NO_AUTOMATION)


async def delete(conn: Conn, automation_id: uuid.UUID) -> None:
    """Its timers and once-claims go with it; its delivery log stays (what still waited is
    failed)."""
    row = found(await automation_rows.delete_automation(conn, automation_id), NO_AUTOMATION)
    await delivery_rows.fail_waiting_deliveries(conn, row.id)
