"""How an outgoing webhook authenticates and which headers of its own it adds.

Each kind of `auth` has exactly one secret (SECRET_KEYS): it is stored encrypted
(shared/crypto.py), shown as "***", and "***" sent back keeps the stored one. Headers an
administrator adds are shown in clear; a secret header belongs in `{"type": "api_key"}`.
"""

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

# RFC 9110 token characters: what a header name may be made of.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# Visible ASCII and spaces/tabs inside; no CR, LF or NUL (a header split into two).
HEADER_VALUE = re.compile(r"^[\x21-\x7e]([\x20-\x7e\t]{0,4094}[\x21-\x7e])?$")
# Headers no administrator sets: hop-by-hop ones (RFC 9110 7.6.1) and those the connection
# itself decides, the signature (set per attempt) and what `auth` and `protocol` set.
RESERVED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
    "content-type", "authorization", "webhook-id", "webhook-timestamp", "webhook-signature",
    "expect", "cookie", "user-agent"})
MAX_HEADERS = 50
# The secret of each kind of auth: encrypted at rest, masked in every answer.
SECRET_KEYS = {"basic": "password", "bearer": "token", "api_key": "key",
               "oauth2_client_credentials": "client_secret"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _header_name(name: str) -> str:
    if not HEADER_NAME.match(name):
        raise ValueError(f"'{name}' is not a valid header name (letters, digits and "
                         "!#$%&'*+.^_`|~- only)")
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"the header '{name}' is set by Casewire or the connection itself; "
                         "use `auth` for credentials")
    return name


def _header_value(value: str) -> str:
    if not HEADER_VALUE.match(value):
        raise ValueError("a header value is 1-4096 visible ASCII characters (spaces inside), "
                         "without line breaks")
    return value


HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderValue = Annotated[str, AfterValidator(_header_value)]
Headers = Annotated[dict[HeaderName, HeaderValue], Field(max_length=MAX_HEADERS)]
Secret = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_header_value)]


class NoAuth(_Strict):
    type: Literal["none"]


class BasicAuth(_Strict):
    type: Literal["basic"]
    username: str = Field(min_length=1)
    password: str


class BearerAuth(_Strict):
    """`Authorization: Bearer <token>`."""

    type: Literal["bearer"]
    token: Secret


class ApiKeyAuth(_Strict):
    """The key in a header of the receiver's choosing (`X-API-Key: <key>`)."""

    type: Literal["api_key"]
    header: HeaderName = "X-API-Key"
    key: Secret


class OAuth2ClientCredentials(_Strict):
    """OAuth 2.0 client credentials (RFC 6749 4.4): the dispatcher fetches an access token from
    `token_url` and sends it as `Authorization: Bearer` (services/dispatcher/auth.py)."""

    type: Literal["oauth2_client_credentials"]
    token_url: HttpUrl
    client_id: str = Field(min_length=1, max_length=1000)
    client_secret: Secret
    scope: str | None = Field(default=None, min_length=1, max_length=1000)
    # How the client authenticates at the token endpoint: HTTP Basic (the RFC's default) or
    # client_id and client_secret in the form body, for servers that take only that.
    client_auth: Literal["basic", "body"] = "basic"


Auth = Annotated[NoAuth | BasicAuth | BearerAuth | ApiKeyAuth | OAuth2ClientCredentials,
                 Field(discriminator="type")]


def with_secret(definition: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """A copy of a stored definition whose auth secret (password, token, key or client
    secret) went through `change`: sealing, revealing, masking and re-encrypting one."""
    action = definition.get("action") or {}
    settings = action.get("settings") or {}
    auth = settings.get("auth") or {}
    key = SECRET_KEYS.get(auth.get("type", ""))
    if key is None or not isinstance(auth.get(key), str):
        return definition
    auth = {**auth, key: change(auth[key])}
    return {**definition, "action": {**action, "settings": {**settings, "auth": auth}}}


def secret_key(auth: dict[str, Any]) -> str | None:
    """Where this auth keeps its secret, if it has one."""
    return SECRET_KEYS.get(auth.get("type", ""))
