"""Signed incoming webhooks: a webhook set to verify refuses a request not signed with its
secret, with 401 and a code saying what was wrong, before anything else reads the body.

`standard-webhooks` (also under Svix's `svix-*` header names): HMAC-SHA256 of
`"{id}.{timestamp}.{body}"`, one of the space-separated `v1,<base64>` signatures must match,
and the timestamp must lie within the webhook's tolerance (a replay later is refused). Its
`webhook-id` then stands in for an `Idempotency-Key` the request does not carry, so a sender's
retries of one message create one case. `hmac-sha256`: the body's HMAC in the configured
header after its prefix, hex or base64. Every comparison is constant-time.
"""

import base64
import binascii
import hashlib
import hmac
import time
from typing import Any

from aiohttp import web

from services.ingest.models import Hook
from shared.crypto import SecretBox
from shared.signing import SECRET_PREFIX
from shared.web import SignatureRejected, TooLarge

SECRET_BOX = web.AppKey("secret_box", SecretBox)
# The verified `webhook-id` of a Standard Webhooks request: its idempotency key.
SIGNED_MESSAGE_ID = web.RequestKey("signed_message_id", str)
PREFIXES = ("webhook-", "svix-")


def _rejected(code: str, message: str) -> SignatureRejected:
    return SignatureRejected(message, code=code)


async def _body(request: web.Request) -> bytes:
    try:
        return await request.read()  # aiohttp keeps it: the handler reads it again
    except web.HTTPRequestEntityTooLarge as exc:
        raise TooLarge("the body exceeds the size limit", code="body_too_large") from exc


def _standard_headers(request: web.Request) -> tuple[str, str, str]:
    for prefix in PREFIXES:
        found = [request.headers.get(f"{prefix}{name}") for name in ("id", "timestamp",
                                                                      "signature")]
        if all(found):
            return found[0] or "", found[1] or "", found[2] or ""
    raise _rejected("signature_missing", "this webhook takes only requests signed per "
                    "Standard Webhooks: webhook-id, webhook-timestamp and webhook-signature")


def _check_standard(request: web.Request, body: bytes, settings: dict[str, Any],
                    secret: str) -> str:
    msg_id, timestamp, signatures = _standard_headers(request)
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise _rejected("signature_invalid", "webhook-timestamp must be Unix seconds")
    tolerance = int(settings.get("tolerance_seconds", 300))
    if abs(time.time() - int(timestamp)) > tolerance:
        raise _rejected("signature_expired", f"webhook-timestamp is more than {tolerance} s "
                        "from now: an old request replayed, or a clock far off")
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    given = [s.partition(",")[2].encode() for s in signatures.split() if s.startswith("v1,")]
    if not any(hmac.compare_digest(expected, candidate) for candidate in given):
        raise _rejected("signature_invalid", "no webhook-signature matches the body with this "
                        "webhook's secret")
    return msg_id


def _decoded(text: str, encoding: str) -> bytes | None:
    try:
        return bytes.fromhex(text) if encoding == "hex" else base64.b64decode(text,
                                                                             validate=True)
    except (ValueError, binascii.Error):
        return None


def _check_hmac(request: web.Request, body: bytes, settings: dict[str, Any],
                secret: str) -> None:
    header, prefix = settings["header"], settings.get("prefix", "")
    value = request.headers.get(header)
    if value is None:
        raise _rejected("signature_missing", f"this webhook takes only requests signed in "
                        f"the {header} header")
    given = _decoded(value.removeprefix(prefix), settings.get("encoding", "hex"))
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not value.startswith(prefix) or given is None or not hmac.compare_digest(expected, given):
        raise _rejected("signature_invalid", f"the {header} signature does not match the body "
                        "with this webhook's secret")


async def check_signature(request: web.Request, hook: Hook) -> None:
    """Nothing if the webhook checks no signature or the request's holds; else 401."""
    if hook.verify is None or hook.verify_secret is None:
        return
    body = await _body(request)
    secret = request.app[SECRET_BOX].decrypt(hook.verify_secret)
    if hook.verify["scheme"] == "standard-webhooks":
        request[SIGNED_MESSAGE_ID] = _check_standard(request, body, hook.verify, secret)
    else:
        _check_hmac(request, body, hook.verify, secret)
