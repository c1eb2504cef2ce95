"""Secrets at rest: automation passwords and signing secrets are Fernet tokens in Postgres.

CASEWIRE_ENCRYPTION_KEY holds one or more Fernet keys, comma-separated (MultiFernet): the
first encrypts, every one decrypts. A key is rotated by putting a new key first, running
`casewire rotate-encryption-key` (which re-encrypts every stored secret with it), and then
dropping the old key. A stored value that is not a Fernet token is a row written before
secrets were encrypted: it is read as the plaintext it is and encrypted on its next write.
"""

import base64
import binascii
import re
from collections.abc import Callable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.errors import ConfigurationError

# Version byte, timestamp, IV, ciphertext (whole AES blocks, at least one) and HMAC-SHA256.
_HEADER, _BLOCK, _MAC = 25, 16, 32
_URLSAFE_BASE64 = re.compile(r"^[A-Za-z0-9_-]+=*$")


class SecretUndecryptable(ConfigurationError):
    """A stored secret was encrypted with a key CASEWIRE_ENCRYPTION_KEY no longer holds."""


def new_key() -> str:
    """A fresh Fernet key (32 random bytes, URL-safe base64)."""
    return Fernet.generate_key().decode()


def is_token(value: str) -> bool:
    """Whether `value` has the shape of a Fernet token (legacy plaintext does not)."""
    if not _URLSAFE_BASE64.match(value):
        return False
    try:
        raw = base64.urlsafe_b64decode(value)
    except (ValueError, binascii.Error):
        return False
    body = len(raw) - _HEADER - _MAC
    return raw[:1] == b"\x80" and body >= _BLOCK and body % _BLOCK == 0


class SecretBox:
    """Encrypts with the first configured key, decrypts with any of them."""

    def __init__(self, keys: str) -> None:
        given = [k.strip() for k in keys.split(",") if k.strip()]
        if not given:
            raise ConfigurationError(
                "CASEWIRE_ENCRYPTION_KEY is not set; stored passwords and signing secrets are "
                "encrypted with it (`make run` generates one; see docs/operations.md, "
                "Secrets at rest).")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in given])
        except (ValueError, binascii.Error) as exc:
            raise ConfigurationError(
                "CASEWIRE_ENCRYPTION_KEY must be Fernet keys (32 random bytes in URL-safe "
                "base64, e.g. from `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`), comma-separated") from exc

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """The plaintext of a stored value; a legacy plaintext value comes back as it is."""
        if not is_token(stored):
            return stored
        return _with_a_key(self._fernet.decrypt, stored, "keep the old key listed until "
                           "`casewire rotate-encryption-key` has run")

    def rotate(self, stored: str) -> str:
        """The same secret encrypted with the first key (a legacy plaintext one for the first
        time)."""
        if not is_token(stored):
            return self.encrypt(stored)
        return _with_a_key(self._fernet.rotate, stored,
                           "list the key it was encrypted with after the new one")


def _with_a_key(work: Callable[[bytes], bytes], stored: str, advice: str) -> str:
    """`work` on a stored token; SecretUndecryptable, with `advice`, if no key opens it."""
    try:
        return work(stored.encode()).decode()
    except InvalidToken as exc:
        raise SecretUndecryptable(
            f"no key in CASEWIRE_ENCRYPTION_KEY decrypts a stored secret; {advice}") from exc
