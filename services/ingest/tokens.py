"""Webhook tokens as they arrive in URLs: the shape that can be one (logs mask them:
shared.logging)."""

import re

# Issued tokens are URL-safe base64 (`secrets.token_urlsafe`). Anything else is no token, and
# never reaches a query (Postgres refuses NUL in text: that was a 500).
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def well_formed(token: str) -> bool:
    return TOKEN.fullmatch(token) is not None

