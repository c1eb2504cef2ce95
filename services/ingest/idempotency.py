"""Idempotency-Key: one case per key, webhook and user for a day; a reused key with another body
is refused (422), as the IETF Idempotency-Key draft has it.

casestore is the guarantee: it records each key in the transaction that creates its case and
creates nothing for a key already held (`idempotency_keys`). What ingest adds is the early
answer: it looks the key up (and remembers the keys it published in the last minutes, which
casestore may not have recorded yet), answers a repeat with 200 without publishing it again, and
a reused key with 422. Event ids stay random: casestore dedupes by key, so a retry that arrives
late, or through another ingest, or while ingest cannot read the database, still makes one case,
and a key used again after it expired makes a new one (no event id is ever reused).

Residual race: two requests with one key and different bodies that reach two ingest processes
before casestore has recorded either are both answered 200; casestore creates the case of the
first it gets and drops the other.
"""

import enum
import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import structlog

from services.ingest import repo
from services.ingest.answers import Published
from services.ingest.models import Hook, HookOptions
from shared.errors import DependencyUnavailable
from shared.event_payloads import IdempotencyKey

log = structlog.get_logger(__name__)

KEY = re.compile(r"[\x20-\x7e]{1,255}")
# Long enough for casestore to have recorded what this process published, unless it is down.
RECENT_SECONDS = 600.0
RECENT_MAX = 10_000


def valid_key(key: str) -> bool:
    """1 to 255 printable ASCII characters. Bytes that are not UTF-8 arrive as surrogate escapes;
    they, control characters and other text are refused before hashing or logging see them."""
    return KEY.fullmatch(key) is not None


def claim(hook: Hook, username: str | None, key: str, data: dict[str, Any],
          options: HookOptions, ttl_seconds: float) -> IdempotencyKey:
    scope = orjson.dumps([str(hook.webhook_id), username, key]).decode()
    body = orjson.dumps({"data": data, "skip_triggers": options.skip_triggers,
                         "skip_validate": options.skip_validate}, option=orjson.OPT_SORT_KEYS)
    return IdempotencyKey(scope=scope, body_hash=hashlib.sha256(body).hexdigest(),
                          expires_at=datetime.now(UTC) + timedelta(seconds=ttl_seconds))


class Verdict(enum.Enum):
    NEW = "new"  # publish
    REPEAT = "repeat"  # accepted before with this body: 200, nothing to publish
    UNSURE = "unsure"  # published before without a confirm: publish again (casestore dedupes)
    REUSED = "reused"  # this key came with another body: 422


@dataclass
class _Published:
    body_hash: str
    confirmed: bool
    until: float


class Idempotency:
    def __init__(self, ttl_seconds: float):
        self.ttl_seconds = ttl_seconds
        self._recent: OrderedDict[str, _Published] = OrderedDict()

    async def verdict(self, pool: asyncpg.Pool, key: IdempotencyKey) -> Verdict:
        recent = self._recent_entry(key.scope)
        if recent is not None:
            if recent.body_hash != key.body_hash:
                return Verdict.REUSED
            return Verdict.REPEAT if recent.confirmed else Verdict.UNSURE
        try:
            stored = await repo.idempotency_body_hash(pool, key.scope)
        except DependencyUnavailable as exc:
            # casestore still creates one case per key; only the early 422 is lost.
            log.warning("idempotency_key_unchecked", error=str(exc))
            return Verdict.NEW
        if stored is None:
            return Verdict.NEW
        return Verdict.REPEAT if stored == key.body_hash else Verdict.REUSED

    def remember(self, key: IdempotencyKey, outcome: Published) -> None:
        if outcome is Published.NOT_SENT:
            return
        now = time.monotonic()
        # Never past the key's own expiry: after that the key makes a new case.
        until = now + min(RECENT_SECONDS, (key.expires_at - datetime.now(UTC)).total_seconds())
        self._recent[key.scope] = _Published(key.body_hash, outcome is Published.CONFIRMED, until)
        self._recent.move_to_end(key.scope)
        while len(self._recent) > RECENT_MAX:
            self._recent.popitem(last=False)

    def _recent_entry(self, scope: str) -> _Published | None:
        entry = self._recent.get(scope)
        if entry is not None and entry.until <= time.monotonic():
            del self._recent[scope]
            return None
        return entry
