"""Random tokens and their stored digests (>= 128 bits, URL-safe)."""

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit, urlunsplit


def new_token(nbytes: int = 24) -> str:
    """A URL-safe random token; 24 bytes is 192 bits."""
    return secrets.token_urlsafe(nbytes)


def digest(token: str) -> bytes:
    """SHA-256 is enough for high-entropy random keys (passwords use argon2 instead)."""
    return hashlib.sha256(token.encode()).digest()


def token_index_key(signing_key: str) -> bytes:
    """The key of the webhook-token index: from CASEWIRE_SIGNING_KEY, which ingest holds (it
    never holds the encryption key that opens the sealed tokens)."""
    return hmac.new(signing_key.encode(), b"casewire-webhook-token-index", hashlib.sha256).digest()


def token_index(key: bytes, token: str) -> bytes:
    """What a webhook token is looked up by: an HMAC, so the stored index neither gives the
    token nor lets anyone without the key check a guess against it."""
    return hmac.new(key, token.encode(), hashlib.sha256).digest()


def redacted_url(url: str) -> str:
    """A connection URL safe to log and print: the password masked, everything else kept."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
