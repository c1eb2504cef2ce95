"""The forms ingest validates against, by webhook token, refreshed on form.changed events."""

import asyncio
import time

import asyncpg
import structlog

from services.ingest import repo
from services.ingest.models import Hook
from shared.events import FORM_CHANGED, Envelope

log = structlog.get_logger(__name__)

# Unknown tokens are remembered briefly so a flood of bad URLs costs one query per second each.
MISS_TTL = 1.0
MAX_MISSES = 10_000


class FormCache:
    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool
        self._by_token: dict[str, Hook] = {}
        self._refreshing: set[asyncio.Task[None]] = set()
        self._misses: dict[str, float] = {}
        self.loaded = False

    async def lookup(self, token: str) -> Hook | None:
        """The enabled hook for a token, after any refresh that began before this call."""
        if self._refreshing:
            await asyncio.gather(*self._refreshing, return_exceptions=True)
        hook = self._by_token.get(token) or await self._load_token(token)
        return hook if hook is not None and hook.enabled else None

    async def _load_token(self, token: str) -> Hook | None:
        """A webhook made a moment ago works before its form.changed event arrives."""
        now = time.monotonic()
        if self._misses.get(token, 0.0) > now:
            return None
        hook = await repo.hook_for_token(self._pool, token)
        if hook is None:
            if len(self._misses) >= MAX_MISSES:
                self._misses.clear()
            self._misses[token] = now + MISS_TTL
            return None
        self._by_token = {**self._by_token, token: hook}
        return hook

    async def reload(self) -> None:
        hooks = await repo.all_hooks(self._pool)
        self._by_token = {h.token: h for h in hooks}
        self.loaded = True
        log.info("forms_loaded", webhooks=len(hooks))

    async def _refresh(self, form_id: str) -> None:
        hook = await repo.hook_for_form(self._pool, form_id)
        by_token = {t: h for t, h in self._by_token.items() if h.form.id != form_id}
        if hook is not None:
            by_token[hook.token] = hook
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
