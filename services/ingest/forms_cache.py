"""The forms ingest validates against, by webhook token (its index: tokens are sealed at rest,
services/casestore/webhook_tokens.py), refreshed on form.changed events."""

import asyncio
import contextlib
import math

import asyncpg
import structlog

from services.ingest import repo
from services.ingest.models import Hook
from services.ingest.ratelimit import RateLimiter
from shared.errors import DependencyUnavailable
from shared.events import FORM_CHANGED, Envelope
from shared.secrets import token_index

log = structlog.get_logger(__name__)

# Webhooks changed this recently are read again for a token the cache does not hold: longer
# than form.changed takes to arrive, or than a missed one waits for the periodic reload.
RECENT_SECONDS = 300.0
# Beyond this many misses waiting for the next read, a miss is answered at once.
MAX_WAITING = 1000
READS = "recent-webhooks"  # the one bucket of the read budget


class FormCache:
    """Every webhook, by token: loaded whole and following form.changed, so a token it does not
    hold is almost always unknown, and one it holds disabled almost always still is.

    Such a miss costs no query of its own: it waits for the next read of the webhooks changed in
    the last minutes, which one query serves for every miss waiting. Reads start at once while
    the budget allows (`lookups_per_second`, as many in a burst), else as soon as it does. A
    flood of made-up URLs costs the database that much and no more, while a webhook made or
    enabled a moment ago (its form.changed not here yet) works on its first request. Unknown and
    disabled tokens take the same path, so the time of the 404 does not tell whether a token
    exists.
    """

    def __init__(self, pool: asyncpg.Pool, lookups_per_second: float, index_key: bytes):
        self._pool = pool
        self._index_key = index_key
        self._by_token: dict[bytes, Hook] = {}  # by the token's index
        self._refreshing: set[asyncio.Task[None]] = set()
        self._reads = RateLimiter(lookups_per_second, max(1, math.ceil(lookups_per_second)))
        self._next_read: asyncio.Task[None] | None = None
        self._waiting = 0
        self.loaded = False
        self.misses = 0  # tokens not in the cache, or disabled in it
        self.token_lookups = 0  # database reads those misses caused

    async def lookup(self, token: str) -> Hook | None:
        """The enabled hook for a token, after any refresh that began before this call."""
        if self._refreshing:
            await asyncio.gather(*self._refreshing, return_exceptions=True)
        index = token_index(self._index_key, token)
        hook = self._by_token.get(index)
        if hook is None or not hook.enabled:
            self.misses += 1
            await self._read_recent_after_now()
            hook = self._by_token.get(index)
        return hook if hook is not None and hook.enabled else None

    async def _read_recent_after_now(self) -> None:
        """Wait for a read of recent webhooks that starts after this call (one that started
        earlier may have missed a webhook committed since)."""
        if self._waiting >= MAX_WAITING:
            return
        if self._next_read is None:
            self._next_read = asyncio.create_task(self._read_recent(), name="recent-webhooks")
        self._waiting += 1
        try:
            await asyncio.shield(self._next_read)
        finally:
            self._waiting -= 1

    async def _read_recent(self) -> None:
        # One token is enough: after the wait it has refilled (a sleep is never shorter).
        if wait := self._reads.acquire(READS):
            await asyncio.sleep(wait)
            self._reads.acquire(READS)
        self._next_read = None  # misses from now on wait for the read after this one
        self.token_lookups += 1
        try:
            recent = await repo.recent_hooks(self._pool, self._index_key, RECENT_SECONDS)
        except DependencyUnavailable as exc:
            log.warning("recent_webhooks_unreadable", error=str(exc))
            return
        newer = {h.token_index: h for h in recent if self._is_news(h)}
        if newer:
            self._by_token = self._by_token | newer

    def _is_news(self, hook: Hook) -> bool:
        """Only what the cache lacks: a token it does not hold, or one it holds disabled that has
        changed since. An enabled hook is form.changed's to update; a read that raced its
        event must not put an older form back."""
        cached = self._by_token.get(hook.token_index)
        return cached is None or (not cached.enabled and hook.changed_at > cached.changed_at)

    async def close(self) -> None:
        if self._next_read is not None:
            self._next_read.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._next_read

    async def reload(self) -> None:
        hooks = await repo.all_hooks(self._pool, self._index_key)
        self._by_token = {h.token_index: h for h in hooks}
        self.loaded = True
        log.info("forms_loaded", webhooks=len(hooks))

    async def _refresh(self, form_id: str) -> None:
        hook = await repo.hook_for_form(self._pool, self._index_key, form_id)
        by_token = {t: h for t, h in self._by_token.items() if h.form.id != form_id}
        if hook is not None:
            by_token[hook.token_index] = hook
        self._by_token = by_token
        log.info("form_refreshed", form_id=form_id)

    async def on_event(self, envelope: Envelope) -> None:
        """Consumer for form.changed: requests that start after this call see the new form."""
        if envelope.type != FORM_CHANGED or envelope.form_id is None:
            return
        task = asyncio.create_task(self._refresh(envelope.form_id))
        self._refreshing.add(task)
        try:
            await task
        finally:
            self._refreshing.discard(task)
