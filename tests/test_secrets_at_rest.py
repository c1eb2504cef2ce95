"""Automation passwords and signing secrets are Fernet-encrypted in Postgres, and keep working."""

import asyncio
import base64
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from cryptography.fernet import Fernet, InvalidToken
from standardwebhooks.webhooks import Webhook

from services.casestore.app import create_app as casestore_app
from services.dispatcher.app import create_app as dispatcher_app
from shared.crypto import SecretBox, SecretUndecryptable, is_token, new_key
from shared.errors import ConfigurationError
from shared.settings import Settings
from tests.helpers import (
    CASEWIRE,
    AutomationFactory,
    FormFactory,
    call,
    cli_env,
    webhook_action,
)
from tests.receiver import Receiver
from tests.stack import ENCRYPTION_KEYS

PASSWORD = "pw-" + uuid.uuid4().hex  # unique, so finding it anywhere in a row is no accident


async def raw_row(db: asyncpg.Connection, automation_id: str) -> tuple[str, str]:
    """(definition as JSON text, secret) exactly as Postgres holds them."""
    row = await db.fetchrow("SELECT definition::text AS definition, secret FROM automations"
                            " WHERE id = $1", uuid.UUID(automation_id))
    assert row is not None
    return row["definition"], row["secret"]


async def with_basic_auth(make_automation: AutomationFactory, form_id: str, url: str,
                          password: str = PASSWORD) -> dict[str, Any]:
    action = webhook_action(url, auth={"type": "basic", "username": "crm", "password": password})
    return await make_automation(form_id, url, action=action)


async def sent_to(api: aiohttp.ClientSession, receiver: Receiver, form_id: str, url: str,
                  count: int = 1) -> Any:
    async with api.post(f"/api/forms/{form_id}/cases",
                        json={"data": {"text-field": "x"}}) as resp:
        assert resp.status == 201, await resp.text()
    return (await receiver.wait_for(url, count))[-1]


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"crm:{password}".encode()).decode()


async def test_stored_password_and_secret_are_ciphertext_and_sends_still_verify(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver, db: asyncpg.Connection) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    automation = await with_basic_auth(make_automation, hook["form_id"], url)
    definition, secret = await raw_row(db, automation["id"])
    assert PASSWORD not in definition
    assert "whsec_" not in secret
    assert automation["secret"].startswith("whsec_")
    stored_password = orjson.loads(definition)["action"]["settings"]["auth"]["password"]
    assert is_token(stored_password)
    assert is_token(secret)
    assert Fernet(ENCRYPTION_KEYS[0]).decrypt(secret).decode() == automation["secret"]
    request = await sent_to(api, receiver, hook["form_id"], url)
    assert request.headers["Authorization"] == basic(PASSWORD)
    Webhook(automation["secret"]).verify(request.body, request.headers)


async def test_rows_stored_in_clear_keep_working_and_are_encrypted_on_their_next_write(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver, db: asyncpg.Connection) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    automation = await with_basic_auth(make_automation, hook["form_id"], url)
    legacy_secret = "whsec_" + base64.b64encode(uuid.uuid4().bytes * 2).decode()
    await db.execute(  # as a row written before secrets were encrypted
        "UPDATE automations SET secret = $2, definition = jsonb_set(definition,"
        " '{action,settings,auth,password}', to_jsonb($3::text)) WHERE id = $1",
        uuid.UUID(automation["id"]), legacy_secret, "legacy-" + PASSWORD)
    path = f"/api/automations/{automation['id']}"
    shown = await call(api, "GET", path, 200)
    assert shown["secret"] == legacy_secret
    request = await sent_to(api, receiver, hook["form_id"], url)
    assert request.headers["Authorization"] == basic("legacy-" + PASSWORD)
    Webhook(legacy_secret).verify(request.body, request.headers)
    await call(api, "PUT", path, 200, {**shown, "name": "renamed"})  # password "***": kept
    definition, secret = await raw_row(db, automation["id"])
    assert PASSWORD not in definition
    assert is_token(secret)
    assert (await call(api, "GET", path, 200))["secret"] == legacy_secret
    request = await sent_to(api, receiver, hook["form_id"], url, count=2)
    assert request.headers["Authorization"] == basic("legacy-" + PASSWORD)
    Webhook(legacy_secret).verify(request.body, request.headers)


async def test_rotate_encryption_key_re_encrypts_every_row_with_the_new_first_key(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, db: asyncpg.Connection) -> None:
    hook = await make_form()
    automation = await with_basic_auth(make_automation, hook["form_id"], "http://127.0.0.1:9/")
    legacy = await make_automation(hook["form_id"], "http://127.0.0.1:9/")
    await db.execute("UPDATE automations SET secret = $2 WHERE id = $1",
                     uuid.UUID(legacy["id"]), legacy["secret"])
    signed = await call(api, "PUT", f"/api/forms/{hook['form_id']}/incoming-webhook", 200,
                        {"verify": {"scheme": "standard-webhooks"}})
    old, new = (Fernet(k) for k in ENCRYPTION_KEYS)
    rotated = ",".join(reversed(ENCRYPTION_KEYS))  # the new key first, the old one still listed
    proc = await asyncio.create_subprocess_exec(
        *CASEWIRE, "rotate-encryption-key", stdout=asyncio.subprocess.PIPE,
        env=cli_env(database_url=settings.database_url, encryption_key=rotated))
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out
    assert "re-encrypted" in out.decode()
    for created in (automation, legacy):
        _, secret = await raw_row(db, created["id"])
        assert new.decrypt(secret).decode() == created["secret"]
        with pytest.raises(InvalidToken):
            old.decrypt(secret)
    definition, _ = await raw_row(db, automation["id"])
    stored = orjson.loads(definition)["action"]["settings"]["auth"]["password"]
    assert new.decrypt(stored).decode() == PASSWORD
    verify_secret = await db.fetchval("SELECT verify_secret FROM incoming_webhooks"
                                      " WHERE form_id = $1", hook["form_id"])
    assert new.decrypt(verify_secret).decode() == signed["verify"]["secret"]
    sealed = await db.fetchval("SELECT token_sealed FROM incoming_webhooks WHERE form_id = $1",
                               hook["form_id"])
    assert new.decrypt(sealed).decode() == hook["token"]  # the webhook token too
    with pytest.raises(InvalidToken):
        old.decrypt(sealed)
    # The running services list both keys, as during a rotation: nothing changes for them.
    shown = await call(api, "GET", f"/api/automations/{automation['id']}", 200)
    assert shown["secret"] == automation["secret"]


# Keys: required, well-formed, and a missing one is said plainly.

@pytest.mark.parametrize("factory", [casestore_app, dispatcher_app])
@pytest.mark.parametrize("key", ["", "not-a-fernet-key"])
def test_casestore_and_dispatcher_refuse_to_start_without_a_usable_key(
        factory: Any, key: str, settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="CASEWIRE_ENCRYPTION_KEY"):
        factory(settings.model_copy(update={"encryption_key": key}))


def test_a_secret_from_a_key_no_longer_listed_is_an_error_not_plaintext() -> None:
    stored = SecretBox(new_key()).encrypt("whsec_x")
    with pytest.raises(SecretUndecryptable, match="CASEWIRE_ENCRYPTION_KEY"):
        SecretBox(new_key()).decrypt(stored)
    assert SecretBox(new_key()).decrypt("plain legacy password") == "plain legacy password"


def test_make_run_generates_a_usable_key_once_and_keeps_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli import state

    monkeypatch.setattr(state, "STATE_DIR", tmp_path / ".casewire")
    first = state.dev_secret("", "encryption-key", new_key)
    assert state.dev_secret("", "encryption-key", new_key) == first
    assert (tmp_path / ".casewire" / "encryption-key").stat().st_mode & 0o777 == 0o600
    assert SecretBox(first).decrypt(SecretBox(first).encrypt("s")) == "s"
    assert state.dev_secret("configured", "encryption-key", new_key) == "configured"
