"""Untrusted text as every service reads it: whole numbers, header values, secrets compared.

One reader for each, so that no value from a request reaches `int()` (which refuses more than
4,300 digits, and reads '²' as a digit it cannot parse), `str.encode()` (a header or cookie that
is not UTF-8 arrives with surrogate escapes, which do not encode) or `hmac.compare_digest`
(which refuses non-ASCII strings): each of those was a 500.
"""

import hmac
import re

from aiohttp import web

# ASCII digits only, at most 19 of them: every bound we check fits in 64 bits, so a longer
# number is out of range whatever it says, and is never handed to int().
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,19}")


def whole_number(text: str | None, low: int, high: int) -> int | None:
    """`text` as an integer from `low` to `high`, or None if it is missing or is not one."""
    if text is None or not WHOLE_NUMBER.fullmatch(text.strip()):
        return None
    value = int(text)
    return value if low <= value <= high else None


def is_text(value: str) -> bool:
    """Whether `value` came from valid UTF-8 (aiohttp turns other bytes into surrogates)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def header(request: web.BaseRequest, name: str) -> str | None:
    """A request header's value, or None when it is absent or not valid UTF-8 (such a value
    is no token, key or id we ever issued)."""
    value = request.headers.get(name)
    return value if value is not None and is_text(value) else None


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of a secret from a request with the real one; any string,
    however it was decoded, compares (unequal) instead of raising."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))
