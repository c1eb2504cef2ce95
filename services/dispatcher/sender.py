"""Sends one attempt of an outgoing webhook: signed, guarded against SSRF, all of it logged.

Whether and when to try again is casestore's decision (its delivery schedule); the verdict on
each attempt says what the answer means.
"""

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from services.dispatcher.auth import TokenCache, TokenUnavailable
from services.dispatcher.request import OutgoingRequest, recorded, signed_payload
from services.dispatcher.ssrf import AddressPolicy, GuardedResolver, TargetRefused
from shared.event_payloads import Attempt, Verdict
from shared.settings import Settings
from shared.signing import webhook_headers

# A JSON answer bigger than this is not response data any receiver should send.
MAX_RESPONSE_BYTES = 1024 * 1024
RETRY_STATUSES = frozenset({408, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Sent:
    """One attempt and what its answer means for the delivery."""

    attempt: Attempt
    verdict: Verdict
    retry_after: float | None = None  # what the receiver asked for, within the cap
    response_json: Any | None = None  # a 2xx body, if it is JSON


@dataclass
class _Answer:
    """What came back for one request, as far as it got."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    retry_after: float | None = None
    error: str | None = None
    final: bool = False  # trying again cannot help: the target is forbidden or invalid


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (delay-seconds or HTTP-date) as seconds from now; None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)  # absurdly long digit strings become inf, which the cap handles
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _verdict(status: int) -> Verdict:
    if 200 <= status < 300:
        return "succeeded"
    if status == 410:
        return "gone"
    return "retry" if status in RETRY_STATUSES or status >= 500 else "final"


def _refusal(exc: BaseException) -> TargetRefused | None:
    if isinstance(exc, TargetRefused):
        return exc
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, TargetRefused):
        return exc.os_error
    return None


def describe(exc: BaseException, timeout: float) -> str:
    """A short, stable error text for the delivery log."""
    if isinstance(exc, TimeoutError):
        return f"timeout after {timeout:g}s"
    refused = _refusal(exc)
    if refused is not None:
        return str(refused)
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"dns lookup failed for {exc.host}: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = f"{exc.host}:{exc.port}"
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"connection refused by {where}"
        return f"connection to {where} failed: {exc.os_error}"
    return f"{type(exc).__name__}: {exc}"


def _headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Repeated headers joined with ", " (as HTTP allows), so none is lost from the log."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined


async def _read_capped(response: aiohttp.ClientResponse, cap: int, into: bytearray) -> None:
    """Read at most `cap` bytes; the rest stays unread (the connection is then dropped)."""
    while len(into) < cap:
        chunk = await response.content.read(cap - len(into))
        if not chunk:
            return
        into.extend(chunk)


class Sender:
    """One HTTP client for the whole process: pooled connections, SSRF guard, no redirects."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = AddressPolicy(settings.outgoing_allow_networks)
        self._cap = max(MAX_RESPONSE_BYTES, settings.response_excerpt_bytes)
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self.tokens = TokenCache()

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds the session to the running event loop.
        if self._session is None or self._session.closed:
            self._resolver = GuardedResolver(self.policy)
            connector = aiohttp.TCPConnector(
                resolver=self._resolver, socket_factory=self.policy.socket_factory,
                # casestore caps the attempts in flight per endpoint; a per-host cap here would
                # let one slow host's waiting requests hold up another automation's on it.
                limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                # Never pick up HTTP(S)_PROXY from the environment: a proxy would do the
                # connecting, past the address checks.
                trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None

    # `timeout` bounds the one attempt; a caller's asyncio.timeout would also cut the recording.
    async def send(self, request: OutgoingRequest, *, secrets: Sequence[str], webhook_id: str,
                   number: int, timeout: float) -> Sent:  # noqa: ASYNC109
        """One attempt, signed with every secret given (two while a rotated one overlaps)."""
        # A fresh timestamp per attempt: receivers reject signatures older than ~5 minutes.
        signed = replace(request, headers={**request.headers, **webhook_headers(
            secrets, webhook_id, signed_payload(request))})
        started_at, started = datetime.now(UTC), time.perf_counter()
        signed, answer = await self._authorized_exchange(signed, timeout)
        excerpt = bytes(answer.body[:self.settings.response_excerpt_bytes])
        attempt = Attempt(
            id=uuid.uuid4(), number=number, started_at=started_at,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            request=recorded(signed), response_status=answer.status,
            response_headers=answer.headers, error=answer.error,
            response_body=(None if answer.status is None
                           else excerpt.decode("utf-8", errors="replace")))
        if answer.status is None:
            # No answer at all: worth another try, unless the target itself is forbidden.
            return Sent(attempt, "final" if answer.final else "retry")
        verdict = _verdict(answer.status)
        # A status means the receiver answered; a body cut short does not change its verdict,
        # but is no document to take response data from.
        response = (_json(bytes(answer.body), self._cap)
                    if verdict == "succeeded" and answer.error is None else None)
        retry_after = (min(answer.retry_after, self.settings.retry_after_cap_seconds)
                       if answer.retry_after is not None and verdict == "retry" else None)
        return Sent(attempt, verdict, retry_after, response)

    async def _authorized_exchange(self, signed: OutgoingRequest,
                                   limit: float) -> tuple[OutgoingRequest, _Answer]:
        """The exchange, with an OAuth2 access token if the request needs one: a 401 with a
        cached token fetches a new one and sends once more (that answer is the attempt's)."""
        auth = signed.oauth2
        if auth is None:
            return signed, await self._exchange(signed, limit)
        for fresh in (False, True):
            try:
                self.policy.check_literal(URL(str(auth.token_url)).raw_host or "")
                fetches = self.tokens.fetches
                token = await self.tokens.token(self._client(), auth)
            except TargetRefused as exc:
                return signed, _Answer(error=f"token URL: {exc}", final=True)
            except TokenUnavailable as exc:
                return signed, _Answer(error=str(exc), final=exc.final)
            with_token = replace(signed, headers={**signed.headers,
                                                  "Authorization": f"Bearer {token}"})
            answer = await self._exchange(with_token, limit)
            # A token fetched for this very request (by it or beside it) is not fetched again.
            if answer.status != 401 or fresh or self.tokens.fetches != fetches:
                return with_token, answer
            # A cached token refused: it may have been revoked before its expiry.
            self.tokens.reject(auth, token)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(self, signed: OutgoingRequest, limit: float) -> _Answer:
        answer = _Answer()
        try:
            url = URL(signed.url, encoded=True)
            self.policy.check_literal(url.raw_host or "")
            async with self._client().request(
                    signed.method, url, headers=signed.headers,
                    data=signed.body if signed.method != "GET" else None,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=limit)) as response:
                answer.status, answer.headers = response.status, _headers(response.headers.items())
                if response.status in RETRY_AFTER_STATUSES:
                    answer.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                await _read_capped(response, self._cap, answer.body)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            answer.error = describe(exc, limit)
            if answer.status is not None:
                answer.error = f"reading the response failed: {answer.error}"
            answer.final = _refusal(exc) is not None or isinstance(exc, aiohttp.InvalidURL)
        return answer


def _json(body: bytes, cap: int) -> Any | None:
    if not body or len(body) >= cap:
        return None  # empty, or cut off at the cap and so not the whole document
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None

