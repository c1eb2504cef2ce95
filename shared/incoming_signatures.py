"""How a form's incoming webhook checks who signed a request: the settings casestore stores
and ingest verifies with (services/ingest/signatures.py).

`standard-webhooks`: the sender signs `"{webhook-id}.{webhook-timestamp}.{body}"` with a
`whsec_` secret (HMAC-SHA256, base64), which Casewire makes unless one is given; a timestamp
outside `tolerance_seconds` is refused, so a captured request cannot be replayed later.
`hmac-sha256`: GitHub-style, the body's HMAC-SHA256 (hex or base64) in a header of the
sender's choosing after a prefix (`X-Hub-Signature-256: sha256=...`); it has no timestamp.
"""

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.outgoing_auth import HEADER_NAME
from shared.signing import SECRET_PREFIX

MASK = "***"
SCHEMES = ("standard-webhooks", "hmac-sha256")


def _whsec(secret: str) -> str:
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not secret.startswith(SECRET_PREFIX) or len(key) < 16:
        raise ValueError("expected whsec_ and the base64 of at least 16 bytes")
    return secret


def _header(name: str) -> str:
    if not HEADER_NAME.match(name):
        raise ValueError(f"'{name}' is not a valid header name")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StandardWebhooks(_Strict):
    scheme: Literal["standard-webhooks"]
    # Omitted: Casewire makes one (and keeps it on later PUTs); given: the sender's own.
    secret: Annotated[str, AfterValidator(_whsec)] | None = None
    tolerance_seconds: int = Field(default=300, ge=1, le=3600)


class HmacSha256(_Strict):
    scheme: Literal["hmac-sha256"]
    header: Annotated[str, AfterValidator(_header)] = "X-Hub-Signature-256"
    prefix: str = Field(default="sha256=", max_length=50, pattern=r"^[\x21-\x7e]*$")
    encoding: Literal["hex", "base64"] = "hex"
    # Write-only: shown as "***"; "***" sent back keeps the stored one.
    secret: str = Field(min_length=1, max_length=1000)


Verification = Annotated[StandardWebhooks | HmacSha256, Field(discriminator="scheme")]


def stored_settings(verify: StandardWebhooks | HmacSha256) -> dict[str, Any]:
    """What the `verify` column holds: the settings without the secret (stored encrypted)."""
    return verify.model_dump(exclude={"secret"})
