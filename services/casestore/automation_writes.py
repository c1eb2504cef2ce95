"""Every write of an automation, for the admin API and the console alike.

Each runs in the caller's transaction and keeps what hangs off an automation in step: its
timers (time-based triggers), the delivery scheduler, the deliveries still waiting, and the
audit row of who changed it (services/casestore/audit.py), so the API and the console cannot
record a change differently or forget to.
"""

import uuid
from typing import Any

from services.casestore import audit, operational, timers
from services.casestore.actors import Actor
from services.casestore.automations import stored_definition, url_problems
from services.casestore.errors import ValidationFailed, found
from services.casestore.operational import EventType
from services.casestore.repo import Conn
from services.casestore.repo import automations as automation_rows
from services.casestore.repo import deliveries as delivery_rows
from services.casestore.repo import schedule as schedule_rows
from shared.addresses import AddressPolicy
from shared.automation_checks import check_against_form
from shared.automations import AutomationDefinition
from shared.crypto import SecretBox
from shared.forms import FormDefinition
from shared.outgoing_auth import secret_key, with_secret
from shared.signing import new_webhook_secret

NO_AUTOMATION = "no automation has that id"
TARGET = "automation"
# What changes without anyone changing the configuration: it would show in every diff.
UNAUDITED = ("health", "created_at", "updated_at", "disabled_at")


def check(definition: AutomationDefinition, form: FormDefinition,
          policy: AddressPolicy) -> None:
    """ValidationFailed listing every problem of the definition on this form."""
    errors = [*check_against_form(definition, form), *url_problems(definition, policy)]
    if errors:
        raise ValidationFailed(errors)


def audited(row: automation_rows.AutomationRow, box: SecretBox) -> dict[str, Any]:
    """The automation as the API shows it, for an audit row's before or after.

    Its auth secret is the decrypted one, not the API's "***" nor the stored ciphertext (which
    every write re-encrypts): only then does a changed secret, and only a changed one, show
    among the changed paths. audit.record masks it, and the signing secret, before storing.
    """
    shown = {k: v for k, v in row.to_api(box).items() if k not in UNAUDITED}
    auth = row.definition["action"]["settings"]["auth"]
    key = secret_key(auth)
    if key is None or not isinstance(auth.get(key), str):
        return shown
    revealed = box.decrypt(auth[key])
    return with_secret(shown, lambda _: revealed)


async def create(conn: Conn, actor: Actor, box: SecretBox, form_id: str,
                 definition: AutomationDefinition, enabled: bool) -> automation_rows.AutomationRow:
    row = await automation_rows.insert_automation(
        conn, uuid.uuid4(), form_id, stored_definition(definition, None, box), enabled,
        box.encrypt(new_webhook_secret()))
    await timers.automation_saved(conn, row.id, definition, row.enabled)
    await audit.record(conn, actor, "automation.created", TARGET, str(row.id),
                       after=audited(row, box))
    return row


async def replace(conn: Conn, actor: Actor, box: SecretBox,
                  current: automation_rows.AutomationRow, definition: AutomationDefinition,
                  enabled: bool | None) -> automation_rows.AutomationRow:
    """The new definition (`enabled` too if given). Every write re-encrypts with the current
    key, so a legacy plaintext row is encrypted too."""
    row = found(await automation_rows.update_automation(
        conn, current.id, definition=stored_definition(definition, current.definition, box),
        enabled=enabled, secret=box.rotate(current.secret)), NO_AUTOMATION)
    await timers.automation_saved(conn, row.id, definition, row.enabled)
    await audit.record(conn, actor, "automation.updated", TARGET, str(row.id),
                       before=audited(current, box), after=audited(row, box))
    return row


async def set_enabled(conn: Conn, actor: Actor, box: SecretBox, automation_id: uuid.UUID,
                      enabled: bool, reason: str) -> automation_rows.AutomationRow:
    """Enabling sends what waited meanwhile, starting with a healthy endpoint.

    Only a switch is a change: enabling an enabled automation (which still closes its
    circuit) or disabling a disabled one writes no audit row and tells no operator.
    """
    current = found(await automation_rows.get_automation(conn, automation_id, lock=True),
                    NO_AUTOMATION)
    row = found(await automation_rows.set_enabled(conn, automation_id, enabled, reason),
                NO_AUTOMATION)
    await timers.automation_saved(conn, row.id, AutomationDefinition.model_validate(
        row.definition), row.enabled)
    await schedule_rows.wake_scheduler(conn)
    if current.enabled != enabled:
        event: EventType = "automation.enabled" if enabled else "automation.disabled"
        await audit.record(conn, actor, event, TARGET, str(row.id),
                           before=audited(current, box), after=audited(row, box))
        told: dict[str, Any] = {"automation_id": str(row.id), "form_id": row.form_id}
        if not enabled:
            told["reason"] = reason
        # As endpoint_health.disable tells of the system's, `by` naming the person.
        await operational.emit(conn, event, {**told, "by": actor.name}, about=row.id)
    return row


async def rotate_secret(conn: Conn, actor: Actor, box: SecretBox, automation_id: uuid.UUID,
                        overlap_hours: float) -> automation_rows.AutomationRow:
    """The old secret keeps signing beside the new one for `overlap_hours`."""
    current = found(await automation_rows.get_automation(conn, automation_id, lock=True),
                    NO_AUTOMATION)
    row = found(await automation_rows.rotate_secret(
        conn, automation_id, box.encrypt(new_webhook_secret()), overlap_hours * 3600),
        NO_AUTOMATION)
    await audit.record(conn, actor, "automation.secret_rotated", TARGET, str(row.id),
                       before=audited(current, box), after=audited(row, box))
    return row


async def delete(conn: Conn, actor: Actor, box: SecretBox, automation_id: uuid.UUID) -> None:
    """Its timers and once-claims go with it; its delivery log stays (what still waited is
    failed)."""
    row = found(await automation_rows.delete_automation(conn, automation_id), NO_AUTOMATION)
    await delivery_rows.fail_waiting_deliveries(conn, row.id)
    await audit.record(conn, actor, "automation.deleted", TARGET, str(row.id),
                       before=audited(row, box))
