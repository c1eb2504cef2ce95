"""Incoming-webhook tokens at rest (migration 012): a database dump gives no webhook URL.

A token is stored sealed, encrypted with CASEWIRE_ENCRYPTION_KEY like the automations' secrets
(shared/crypto.py), and found by its index: an HMAC of it under a key derived from
CASEWIRE_SIGNING_KEY (shared.secrets.token_index), which ingest computes for each request's
token and looks up in its cache. Ingest never holds the key that opens a sealed token.

Tokens written before migration 012 stay in clear until casestore starts with the keys
(`seal_tokens`, one transaction); a token indexed under another signing key (it changed) is
indexed again then too. Ingest finds clear and sealed tokens alike meanwhile.
"""

import asyncio
from dataclasses import dataclass

import asyncpg
import structlog
from aiohttp import web

from services.casestore.repo import Conn
from services.casestore.repo import access as access_rows
from shared.crypto import SecretBox, SecretUndecryptable
from shared.secrets import new_token, token_index, token_index_key
from shared.service import POOL, schema_ready
from shared.settings import Settings

log = structlog.get_logger(__name__)
# While the schema is older than the code (the migration Job has not run), try again this often.
SCHEMA_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class TokenSeal:
    box: SecretBox
    index_key: bytes

    @classmethod
    def of(cls, settings: Settings) -> "TokenSeal":
        return cls(SecretBox(settings.encryption_key), token_index_key(settings.signing_key))

    def index(self, token: str) -> bytes:
        return token_index(self.index_key, token)

    def opened(self, row: access_rows.WebhookRow) -> str:
        """The row's token in clear (SecretUndecryptable if no listed key opens it)."""
        if row.token_sealed is not None:
            return self.box.decrypt(row.token_sealed)
        assert row.token is not None  # the table's check: clear, or sealed and indexed
        return row.token

    def up_to_date(self, row: access_rows.WebhookRow) -> bool:
        return row.token is None and row.token_index == self.index(self.opened(row))


TOKEN_SEAL = web.AppKey("token_seal", TokenSeal)


def url(public_base_url: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}/hooks/{token}"


def shown(seal: TokenSeal, row: access_rows.WebhookRow, public_base_url: str
          ) -> dict[str, object]:
    """The webhook as the API answers it: its URL and token in clear, its settings; a
    Standard Webhooks signing secret shown (the sender needs it), an HMAC one never."""
    token = seal.opened(row)
    verify = None
    if row.verify is not None and row.verify_secret is not None:
        secret = (seal.box.decrypt(row.verify_secret)
                  if row.verify["scheme"] == "standard-webhooks" else "***")
        verify = {**row.verify, "secret": secret}
    return {"url": url(public_base_url, token), "token": token, "enabled": row.enabled,
            "authenticate_user": row.authenticate_user, "verify": verify}


async def save(conn: Conn, seal: TokenSeal, form_id: str, enabled: bool,
               authenticate_user: bool) -> access_rows.WebhookRow:
    """Enable or disable the form's webhook, user authentication on or off; a new webhook
    gets a new sealed token, an existing one keeps its token."""
    token = new_token()
    return await access_rows.upsert_webhook(conn, form_id, seal.box.encrypt(token),
                                            seal.index(token), enabled, authenticate_user)


async def rotate(conn: Conn, seal: TokenSeal, form_id: str) -> access_rows.WebhookRow | None:
    """A new sealed token; the old URL answers 404 from then on."""
    token = new_token()
    return await access_rows.set_webhook_token(conn, form_id, seal.box.encrypt(token),
                                               seal.index(token))


async def reencrypt_tokens(conn: Conn, box: SecretBox) -> int:
    """Every sealed token encrypted with the first key (`casewire rotate-encryption-key`);
    how many. Its index stays. Run in a transaction."""
    sealed = [(r.form_id, r.token_sealed, r.token_index)
              for r in await access_rows.all_webhooks(conn, lock=True)]
    changed = 0
    for form_id, token_sealed, index in sealed:
        if token_sealed is not None and index is not None:
            await access_rows.set_webhook_token(conn, form_id, box.rotate(token_sealed), index)
            changed += 1
    return changed


def _stale(seal: TokenSeal, row: access_rows.WebhookRow) -> bool:
    try:
        return not seal.up_to_date(row)
    except SecretUndecryptable as exc:
        log.error("webhook_token_undecryptable", form_id=row.form_id, error=str(exc))
        return False


async def seal_tokens(conn: Conn, seal: TokenSeal) -> int:
    """Seal every token kept in clear and index again any indexed under another signing key;
    how many changed. Rows are locked only when there is work: a start with nothing to do
    blocks no writer."""
    if not any(_stale(seal, row) for row in await access_rows.all_webhooks(conn)):
        return 0
    async with conn.transaction():
        stale = [r for r in await access_rows.all_webhooks(conn, lock=True) if _stale(seal, r)]
        for row in stale:
            token = seal.opened(row)
            await access_rows.set_webhook_token(conn, row.form_id, seal.box.encrypt(token),
                                                seal.index(token))
    return len(stale)


async def seal_at_start(app: web.Application) -> None:
    """Once the schema has migration 012 (pods may start before the migration Job ran)."""
    while True:
        if await schema_ready(app):
            break
        await asyncio.sleep(SCHEMA_WAIT_SECONDS)
    try:
        async with app[POOL].acquire() as conn:
            sealed = await seal_tokens(conn, app[TOKEN_SEAL])
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("webhook_tokens_not_sealed", error=repr(exc))  # the next start tries again
        return
    if sealed:
        log.info("webhook_tokens_sealed", count=sealed)
