"""The HTTP request an outgoing webhook sends, built from its settings and resolved content."""

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import orjson

from shared.automations import RequestSettings
from shared.event_payloads import RecordedRequest
from shared.outgoing_auth import ApiKeyAuth, BasicAuth, BearerAuth, OAuth2ClientCredentials

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
    # Headers whose values are secrets beyond SECRET_HEADERS (an API key's), masked in the log.
    secret_headers: frozenset[str] = field(default_factory=frozenset)
    # The sender fetches (and caches) an access token for this before sending.
    oauth2: OAuth2ClientCredentials | None = None


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


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _auth_headers(settings: RequestSettings, username: str | None,
                  password: str | None) -> dict[str, str]:
    """What `auth` puts in the headers (an OAuth2 token is the sender's to add)."""
    auth = settings.auth
    if isinstance(auth, BasicAuth):
        return {"Authorization": basic_authorization(auth.username, auth.password)}
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"Bearer {auth.token}"}
    if isinstance(auth, ApiKeyAuth):
        return {auth.header: auth.key}
    if username is not None and not isinstance(auth, OAuth2ClientCredentials):
        # Credentials typed into the URL become a header, so the URL itself carries no secret
        # into the delivery log.
        return {"Authorization": basic_authorization(unquote(username), unquote(password or ""))}
    return {}


def build_request(settings: RequestSettings, content: dict[str, Any]) -> OutgoingRequest:
    parts = urlsplit(str(settings.url))
    # The administrator's headers first: what Casewire sets wins (RESERVED_HEADERS keeps them
    # apart anyway).
    headers = {**settings.headers, "User-Agent": USER_AGENT,
               **_auth_headers(settings, parts.username, parts.password)}
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
    auth = settings.auth
    return OutgoingRequest(
        method=settings.method, url=url, headers=headers, body=body,
        secret_headers=frozenset({auth.header.lower()} if isinstance(auth, ApiKeyAuth) else ()),
        oauth2=auth if isinstance(auth, OAuth2ClientCredentials) else None)


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


def masked_headers(headers: dict[str, str],
                   secret: frozenset[str] = frozenset()) -> dict[str, str]:
    """Secret header values replaced by their scheme and `***` ("Basic ***"); those named in
    `secret` (lower case) by `***` alone."""
    return {name: _mask(value) if name.lower() in SECRET_HEADERS
            else "***" if name.lower() in secret else value
            for name, value in headers.items()}


def recorded(request: OutgoingRequest) -> RecordedRequest:
    """The request as the delivery log keeps it: no secrets, the body as text."""
    return RecordedRequest(method=request.method, url=request.url,
                           headers=masked_headers(request.headers, request.secret_headers),
                           body=request.body.decode("utf-8", errors="replace"))
