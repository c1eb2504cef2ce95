"""Signatures: Standard Webhooks for outgoing requests, expiring signed URLs for files and returns.

Signed URLs work like S3 presigned URLs: an HMAC over method, path and expiry, so a URL cannot be
moved to another resource, method or lifetime without the key.
"""

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from shared.inputs import same_secret, whole_number
from shared.settings import Settings

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _signature(secret: str, signed: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(secrets: Sequence[str], msg_id: str, payload: bytes,
                    timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for exactly these payload bytes.

    One signature per secret, space separated, as the spec has it for a secret being rotated:
    a receiver holding either secret verifies.
    """
    ts = int(time.time()) if timestamp is None else timestamp
    signed = f"{msg_id}.{ts}.".encode() + payload
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": " ".join(_signature(s, signed) for s in secrets)}


@dataclass(frozen=True)
class UrlSigner:
    """Signs and checks `?expires=<unix>&signature=<hex>` on a path."""

    key: str

    def _mac(self, method: str, path: str, expires: int) -> str:
        message = f"{method.upper()}\n{path}\n{expires}".encode()
        return hmac.new(self.key.encode(), message, hashlib.sha256).hexdigest()

    def sign(self, method: str, path: str, ttl_seconds: float, now: float | None = None) -> str:
        """`path?expires=...&signature=...`, valid for `ttl_seconds` from now."""
        expires = int((time.time() if now is None else now) + ttl_seconds)
        query = urlencode({"expires": expires, "signature": self._mac(method, path, expires)})
        return f"{path}?{query}"

    def check(self, method: str, path: str, expires: str | None, signature: str | None,
              now: float | None = None) -> str | None:
        """None if valid, else why not: "invalid" (tampered/missing) or "expired"."""
        until = whole_number(expires, 0, 2**63 - 1)
        if until is None or not signature or not same_secret(signature,
                                                             self._mac(method, path, until)):
            return "invalid"
        if until < (time.time() if now is None else now):
            return "expired"
        return None


def file_path(file_id: str) -> str:
    """Where casestore serves a file attached to a case (signed, expiring)."""
    return f"/files/{file_id}"


def return_path(automation_id: str, case_id: str, delivery_id: str, depth: int) -> str:
    """ingest's returnDataURL: everything needed to write the answer is in the signed path."""
    return f"/return/{automation_id}/{case_id}/{delivery_id}/{depth}"


def file_url(settings: Settings, file_id: str) -> str:
    """A download URL for receivers, valid CASEWIRE_FILE_URL_TTL_SECONDS (the seed's 24 h)."""
    path = UrlSigner(settings.signing_key).sign("GET", file_path(file_id),
                                                settings.file_url_ttl_seconds)
    return (settings.public_files_url or settings.casestore_url).rstrip("/") + path


def return_url(settings: Settings, automation_id: str, case_id: str, delivery_id: str,
               depth: int) -> str:
    """A returnDataURL on ingest, valid CASEWIRE_RETURN_URL_TTL_SECONDS (the seed's 2 h)."""
    path = return_path(automation_id, case_id, delivery_id, depth)
    signed = UrlSigner(settings.signing_key).sign("POST", path, settings.return_url_ttl_seconds)
    return settings.public_base_url.rstrip("/") + signed
