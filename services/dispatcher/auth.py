"""OAuth 2.0 client credentials for outgoing webhooks: access tokens fetched, cached, shared.

One cache per dispatcher process, keyed by the credentials (token URL, client id, secret,
scope, how the client authenticates), so every automation with the same credentials shares
one token. A token is used until shortly before its `expires_in` (a tenth of its life, at most
a minute, early), and is fetched once however many deliveries need it at the same moment.
A receiver's 401 drops it: the sender fetches a new one and sends once more (sender.py).
Each dispatcher fetches its own token: tokens are never written to Postgres, whose only
writer is casestore, and N dispatchers cost a token endpoint N fetches an expiry.
"""

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog
from yarl import URL

from services.dispatcher.request import basic_authorization
from shared.outgoing_auth import OAuth2ClientCredentials

log = structlog.get_logger(__name__)

# Without `expires_in` a token is kept this long (or until a receiver answers 401).
DEFAULT_LIFETIME_SECONDS = 300.0
EARLY_AT_MOST_SECONDS = 60.0
TOKEN_TIMEOUT_SECONDS = 10.0
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024


class TokenUnavailable(Exception):
    """No access token: the endpoint failed (`final`: it refused the credentials)."""

    def __init__(self, message: str, *, final: bool) -> None:
        super().__init__(message)
        self.final = final


@dataclass(frozen=True)
class Token:
    value: str
    renew_at: float  # monotonic time


def _key(auth: OAuth2ClientCredentials) -> tuple[str, ...]:
    # The secret is part of the key (a changed secret must not use the old token), hashed so
    # the cache holds no second copy of it.
    secret = hashlib.sha256(auth.client_secret.encode()).hexdigest()
    return (str(auth.token_url), auth.client_id, secret, auth.scope or "", auth.client_auth)


def _form(auth: OAuth2ClientCredentials) -> dict[str, str]:
    form = {"grant_type": "client_credentials"}
    if auth.scope:
        form["scope"] = auth.scope
    if auth.client_auth == "body":
        form |= {"client_id": auth.client_id, "client_secret": auth.client_secret}
    return form


def _lifetime(answer: dict[str, Any]) -> float:
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)  # some servers send it as a string
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        return DEFAULT_LIFETIME_SECONDS
    return float(expires_in) - min(EARLY_AT_MOST_SECONDS, float(expires_in) / 10)


class TokenCache:
    """Access tokens by credentials, in this process."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, ...], Token] = {}
        self._fetching: dict[tuple[str, ...], asyncio.Task[Token]] = {}
        self.fetches = 0

    async def token(self, session: aiohttp.ClientSession, auth: OAuth2ClientCredentials) -> str:
        """A valid access token: the cached one, or one fetch shared by every caller."""
        key = _key(auth)
        cached = self._tokens.get(key)
        if cached is not None and time.monotonic() < cached.renew_at:
            return cached.value
        task = self._fetching.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(session, auth))
            self._fetching[key] = task
            task.add_done_callback(lambda _: self._fetching.pop(key, None))
        token = await asyncio.shield(task)
        return token.value

    def reject(self, auth: OAuth2ClientCredentials, value: str) -> None:
        """A receiver refused this token (401): the next caller fetches a new one."""
        key = _key(auth)
        cached = self._tokens.get(key)
        if cached is not None and cached.value == value:
            del self._tokens[key]

    async def _fetch(self, session: aiohttp.ClientSession, auth: OAuth2ClientCredentials) -> Token:
        self.fetches += 1
        headers = {"Accept": "application/json"}
        if auth.client_auth == "basic":
            headers["Authorization"] = basic_authorization(auth.client_id, auth.client_secret)
        where = str(auth.token_url)
        try:
            async with session.post(
                    URL(where), data=_form(auth), headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=TOKEN_TIMEOUT_SECONDS)) as response:
                body = await response.content.read(MAX_TOKEN_RESPONSE_BYTES)
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TokenUnavailable(f"the OAuth2 token request to {where} failed: "
                                   f"{type(exc).__name__}: {exc}", final=False) from exc
        answer = _json_object(body)
        value = answer.get("access_token") if answer else None
        if status != 200 or not isinstance(value, str) or not value:
            # 400/401: wrong credentials or scope, which another try will not fix.
            raise TokenUnavailable(
                f"the OAuth2 token endpoint {where} answered {status} without an access "
                f"token: {body[:200].decode('utf-8', 'replace')}", final=400 <= status < 500)
        token = Token(value, time.monotonic() + _lifetime(answer or {}))
        self._tokens[_key(auth)] = token
        log.info("oauth2_token_fetched", token_url=where, client_id=auth.client_id)
        return token


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None
