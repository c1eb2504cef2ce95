"""Setting how a form's incoming webhook checks who signed a request (PUT incoming-webhook).

The secret is stored encrypted (shared/crypto.py). A Standard Webhooks secret is made here
unless the sender brought its own, and kept on later PUTs that give none; an HMAC secret is
write-only, and "***" sent back keeps the stored one while the scheme stays hmac-sha256.
"""

from services.casestore.errors import ValidationFailed, found
from services.casestore.repo import Conn
from services.casestore.repo import access as access_rows
from shared.crypto import SecretBox
from shared.forms import FieldError
from shared.incoming_signatures import MASK, HmacSha256, StandardWebhooks, stored_settings
from shared.signing import new_webhook_secret

NO_WEBHOOK = "this form has no incoming webhook"


def _stored_secret(current: access_rows.WebhookRow, scheme: str, box: SecretBox) -> str | None:
    if current.verify is None or current.verify_secret is None:
        return None
    return box.decrypt(current.verify_secret) if current.verify["scheme"] == scheme else None


def _secret(given: StandardWebhooks | HmacSha256, current: access_rows.WebhookRow,
            box: SecretBox) -> str:
    kept = _stored_secret(current, given.scheme, box)
    if isinstance(given, StandardWebhooks):
        return given.secret or kept or new_webhook_secret()
    if given.secret != MASK:
        return given.secret
    if kept is None:
        raise ValidationFailed([FieldError(
            field="verify.secret", code="invalid",
            message=f"'{MASK}' keeps the stored secret, but no hmac-sha256 secret is stored; "
                    "send the secret itself")])
    return kept


async def set_verification(conn: Conn, box: SecretBox, current: access_rows.WebhookRow,
                           given: StandardWebhooks | HmacSha256 | None
                           ) -> access_rows.WebhookRow:
    """`given` from now on (None: no signature is checked)."""
    if given is None:
        row = await access_rows.set_verification(conn, current.form_id, None, None)
    else:
        secret = box.encrypt(_secret(given, current, box))
        row = await access_rows.set_verification(conn, current.form_id,
                                                 stored_settings(given), secret)
    return found(row, NO_WEBHOOK)
