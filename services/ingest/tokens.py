"""Webhook tokens as they arrive in URLs: the shape that can be one, and what logs may show."""

import re

# Issued tokens are URL-safe base64 (`secrets.token_urlsafe`). Anything else is no token, and
# never reaches a query (Postgres refuses NUL in text: that was a 500).
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
SHOWN = 4


def well_formed(token: str) -> bool:
    return TOKEN.fullmatch(token) is not None


def masked(token: str) -> str:
    """Enough to tell tokens apart in a log line, far too little to use one."""
    return token[:SHOWN] + "…"


def masked_path(path: str) -> str:
    """A request path with the token of `/hooks/{token}...` masked."""
    prefix, hooks, rest = path.partition("/hooks/")
    if not hooks:
        return path
    token, slash, tail = rest.partition("/")
    return f"{prefix}{hooks}{masked(token)}{slash}{tail}"
