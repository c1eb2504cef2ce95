"""The HTTP request an outgoing webhook sends, built from its settings and resolved content."""

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import orjson

from shared.automations import BasicAuth, RequestSettings
from shared.events import RecordedRequest

USER_AGENT = "Casewire-Webhooks/1.0"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# Header values that must never reach a delivery log.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})


@dataclass(frozen=True)
class OutgoingRequest:
    method: str
    url: str  # already percent-encoded; sent exactly as is
    headers: dict[str, str]
    body: bytes


def form_text(value: Any) -> str:
    """One value as form or query text: what a receiver would type for it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    text = orjson.dumps(value).decode()
    # Dates and UUIDs become their JSON string, without the quotes; structures stay JSON.
    parsed = orjson.loads(text)
    return parsed if isinstance(parsed, str) else text


def form_encode(content: dict[str, Any]) -> str:
    """`application/x-www-form-urlencoded`; a list becomes the key repeated, like a multiselect."""
    pairs: list[tuple[str, str]] = []
    for key, value in content.items():
        values = value if isinstance(value, list) else [value]
        pairs.extend((key, form_text(v)) for v in values)
    return urlencode(pairs)


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def build_request(settings: RequestSettings, content: dict[str, Any]) -> OutgoingRequest:
    parts = urlsplit(str(settings.url))
    headers = {"User-Agent": USER_AGENT}
    if isinstance(settings.auth, BasicAuth):
        headers["Authorization"] = _basic(settings.auth.username, settings.auth.password)
    elif parts.username is not None:
        # Credentials typed into the URL become a header, so the URL itself carries no secret
        # into the delivery log.
        headers["Authorization"] = _basic(unquote(parts.username), unquote(parts.password or ""))
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    body = b""
    if settings.method == "GET":
        extra = form_encode(content)
        query = f"{query}&{extra}" if query and extra else query or extra
    elif settings.protocol == "form":
        headers["Content-Type"] = FORM
        body = form_encode(content).encode()
    else:
        headers["Content-Type"] = JSON
        body = orjson.dumps([content] if settings.protocol == "json_array" else content)
    # The fragment never leaves the client anyway.
    url = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    return OutgoingRequest(method=settings.method, url=url, headers=headers, body=body)


def signed_payload(request: OutgoingRequest) -> bytes:
    """What the Standard Webhooks signature covers: the body, or for GET (which has none and
    carries the content in its URL) the raw query string exactly as sent, without the `?`."""
    if request.method == "GET":
        return urlsplit(request.url).query.encode()
    return request.body


def _mask(value: str) -> str:
    scheme, space, _ = value.partition(" ")
    # Without a space the whole value may be the secret.
    return f"{scheme} ***" if space else "***"


def masked_headers(headers: dict[str, str]) -> dict[str, str]:
    """Secret header values replaced by their scheme and `***` ("Basic ***")."""
    return {name: _mask(value) if name.lower() in SECRET_HEADERS else value
            for name, value in headers.items()}


def recorded(request: OutgoingRequest) -> RecordedRequest:
    """The request as the delivery log keeps it: no secrets, the body as text."""
    return RecordedRequest(method=request.method, url=request.url,
                           headers=masked_headers(request.headers),
                           body=request.body.decode("utf-8", errors="replace"))
