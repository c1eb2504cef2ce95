"""Incoming-webhook tokens at rest: sealed with the encryption key and found by an HMAC index,
so a database dump gives no webhook URL; tokens stored in clear before are sealed, and tokens
indexed under another signing key indexed again, when casestore starts."""

import functools
import hashlib
import os
from typing import Any

import aiohttp
import asyncpg

from shared.crypto import SecretBox
from shared.secrets import token_index, token_index_key
from shared.settings import Settings
from tests.helpers import FormFactory, call, until
from tests.stack import Stack


async def stored(db: asyncpg.Connection, form_id: str) -> dict[str, Any]:
    row = await db.fetchrow("SELECT * FROM incoming_webhooks WHERE form_id = $1", form_id)
    assert row is not None
    return dict(row)


async def creates_a_case(http: aiohttp.ClientSession, url: str) -> bool:
    async with http.post(url, json={"text-field": "x"}) as resp:
        return resp.status == 200


async def test_a_dump_holds_neither_the_token_nor_anything_that_opens_or_checks_it(
        settings: Settings, make_form: FormFactory, db: asyncpg.Connection,
        http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    token = hook["token"]
    row = await stored(db, hook["form_id"])
    assert row["token"] is None
    assert token not in repr(row)
    assert SecretBox(settings.encryption_key).decrypt(row["token_sealed"]) == token
    assert row["token_index"] == token_index(token_index_key(settings.signing_key), token)
    assert row["token_index"] != hashlib.sha256(token.encode()).digest()  # keyed, not a hash
    assert await creates_a_case(http, hook["url"])


async def test_rotation_seals_the_new_token_and_the_old_url_is_gone(
        make_form: FormFactory, db: asyncpg.Connection, api: aiohttp.ClientSession,
        http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    rotated = await call(api, "POST", f"/api/forms/{hook['form_id']}/incoming-webhook/rotate",
                         200)
    row = await stored(db, hook["form_id"])
    assert rotated["token"] not in repr(row)
    assert await creates_a_case(http, rotated["url"])
    async with http.post(hook["url"], json={"text-field": "x"}) as resp:
        assert resp.status == 404


async def test_clear_tokens_keep_working_and_are_sealed_when_casestore_starts(
        settings: Settings, stack: Stack, make_form: FormFactory, db: asyncpg.Connection,
        api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    """As migration 012 leaves rows written before it (SQL cannot encrypt), and as a signing
    key that changed leaves the index: casestore seals and indexes them again at its start."""
    clear, other_key = await make_form(), await make_form()
    await db.execute("UPDATE incoming_webhooks SET token = $2, token_sealed = NULL,"
                     " token_index = NULL, updated_at = now() WHERE form_id = $1",
                     clear["form_id"], clear["token"])
    await db.execute("UPDATE incoming_webhooks SET token_index = $2, updated_at = now()"
                     " WHERE form_id = $1", other_key["form_id"], os.urandom(32))
    assert await creates_a_case(http, clear["url"])  # ingest finds a clear token meanwhile
    await stack.stop("casestore")
    await stack.start("casestore")

    async def sealed() -> bool:
        rows = [await stored(db, h["form_id"]) for h in (clear, other_key)]
        return all(r["token"] is None for r in rows)

    await until(sealed)
    index_key = token_index_key(settings.signing_key)
    for hook in (clear, other_key):
        row = await stored(db, hook["form_id"])
        assert row["token_index"] == token_index(index_key, hook["token"])
        assert hook["token"] not in repr(row)
        shown = await call(api, "GET", f"/api/forms/{hook['form_id']}/incoming-webhook", 200)
        assert shown["url"] == hook["url"]
        await until(functools.partial(creates_a_case, http, hook["url"]))  # ingest re-read it
