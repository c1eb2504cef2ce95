"""Every write of a form's incoming webhook and of the users allowed on it, for the admin API
and the console alike; and how a webhook is shown, its secrets only to who may see them.

Each write runs in the caller's transaction with its audit row, and queues form.changed when
ingest must learn of it. Passwords come hashed: hashing is slow, and must not hold the
transaction open.
"""

from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from services.casestore import audit, webhook_signatures, webhook_tokens
from services.casestore.actors import Actor
from services.casestore.automations import SECRET_BOX
from services.casestore.errors import Conflict, RecordNotFound, ValidationFailed, found
from services.casestore.form_writes import announce_form, load_form
from services.casestore.repo import Conn
from services.casestore.repo import access as access_rows
from services.casestore.webhook_tokens import TOKEN_SEAL, TokenSeal
from shared.crypto import SecretBox
from shared.forms import SLUG, FieldError, Label
from shared.incoming_signatures import Verification
from shared.secrets import digest, new_token
from shared.service import SETTINGS

NO_WEBHOOK = "this form has no incoming webhook"


FormId = Annotated[str, Field(pattern=SLUG)]
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Label
    password: Password
    forms: list[FormId] = Field(default_factory=list)


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    authenticate_user: bool = False
    # Beyond the seed: check who signed each request (null: no check). Left out, it stays.
    verify: Verification | None = None


@dataclass(frozen=True, slots=True)
class WebhookKeys:
    """What writing and showing a webhook takes: the seal of its token, the box of its signing
    secret, and the base of its URL."""

    seal: TokenSeal
    box: SecretBox
    base_url: str

    @classmethod
    def of(cls, request: web.Request) -> "WebhookKeys":
        config = request.config_dict  # the console's too: it is a sub-application
        return cls(config[TOKEN_SEAL], config[SECRET_BOX], config[SETTINGS].public_base_url)


def url(keys: WebhookKeys, row: access_rows.WebhookRow, *, secrets: bool) -> str:
    """The webhook's URL; its token is "***" unless `secrets`."""
    return webhook_tokens.url(keys.base_url, keys.seal.opened(row) if secrets else audit.MASK)


def shown(keys: WebhookKeys, row: access_rows.WebhookRow, *, secrets: bool) -> dict[str, Any]:
    """The webhook as the API answers it; unless `secrets`, its token and signing secret (in
    its URL too) are "***"."""
    answer = webhook_tokens.shown(keys.seal, row, keys.base_url)
    if secrets:
        return answer
    verify = answer["verify"]
    return {**answer, "url": url(keys, row, secrets=False), "token": audit.MASK,
            "verify": {**verify, "secret": audit.MASK} if isinstance(verify, dict) else None}


def _audited(keys: WebhookKeys, row: access_rows.WebhookRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    # The token and secret go to audit.record, which masks them by their keys after diffing, so
    # a rotation shows as a changed path; the URL, whose key does not say it holds the token,
    # is masked here.
    return {**shown(keys, row, secrets=True), "url": url(keys, row, secrets=False)}


async def save(conn: Conn, actor: Actor, keys: WebhookKeys, form_id: str,
               settings: WebhookSettings) -> access_rows.WebhookRow:
    """The form's webhook with these settings (`verify` only if given); a new webhook gets a
    token, an existing one keeps its own."""
    form = await load_form(conn, form_id)
    before = await access_rows.get_webhook(conn, form.id)
    row = await webhook_tokens.save(conn, keys.seal, form.id, settings.enabled,
                                    settings.authenticate_user)
    if "verify" in settings.model_fields_set:
        row = await webhook_signatures.set_verification(conn, keys.box, row, settings.verify)
    await announce_form(conn, form.id, "webhook")
    await audit.record(conn, actor, "incoming_webhook.updated", "form", form.id,
                       before=_audited(keys, before), after=_audited(keys, row))
    return row


async def rotate(conn: Conn, actor: Actor, keys: WebhookKeys,
                 form_id: str) -> access_rows.WebhookRow:
    """A new token: the old URL answers 404 from then on."""
    before = found(await access_rows.get_webhook(conn, form_id), NO_WEBHOOK)
    row = found(await webhook_tokens.rotate(conn, keys.seal, form_id), NO_WEBHOOK)
    await announce_form(conn, form_id, "webhook")
    await audit.record(conn, actor, "incoming_webhook.token_rotated", "form", form_id,
                       before=_audited(keys, before), after=_audited(keys, row))
    return row


async def issue_auth_key(conn: Conn, actor: Actor, hook: access_rows.WebhookRow,
                         username: str) -> str:
    """A new auth key of the user on the webhook; only its hash is kept (nor is it audited).
    ForeignKeyViolationError if the user or the webhook is gone."""
    key = new_token(32)
    await access_rows.insert_auth_key(conn, digest(key), username, hook.id)
    await audit.record(conn, actor, "incoming_webhook.auth_keys_issued", "form", hook.form_id,
                       after={"username": username})
    return key


async def revoke_auth_keys(conn: Conn, actor: Actor, hook: access_rows.WebhookRow,
                           username: str) -> None:
    """Every auth key of the user on the webhook."""
    revoked = await access_rows.delete_auth_keys(conn, username, hook.id)
    await audit.record(conn, actor, "incoming_webhook.auth_keys_revoked", "form", hook.form_id,
                       before={"username": username, "revoked": revoked})


def _forms_must_exist() -> ValidationFailed:
    return ValidationFailed([FieldError(field="forms", code="invalid",
                                        message="every form must exist")])


def _user_missing(username: str) -> RecordNotFound:
    return RecordNotFound(f"user '{username}' not found")


def _user(username: str, forms: list[str], *, new_password: bool = False) -> dict[str, Any]:
    """A user as the API shows one; a new password as a masked key, so it shows as changed."""
    return {"username": username, "forms": forms, **({"password": "new"} if new_password else {})}


async def _stored_user(conn: Conn, username: str) -> dict[str, Any]:
    # repo/access.py reads users only all at once; they are few (people, not cases).
    row = next((u for u in await access_rows.list_users(conn) if u.username == username), None)
    if row is None:
        raise _user_missing(username)
    return _user(row.username, row.forms)


async def create_user(conn: Conn, actor: Actor, username: str, password_hash: str,
                      forms: list[str]) -> list[str]:
    """The new user's forms (sorted, once each); Conflict if the name is taken."""
    forms = sorted(set(forms))
    try:
        await access_rows.insert_user(conn, username, password_hash, forms)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"user '{username}' already exists") from exc
    except asyncpg.ForeignKeyViolationError as exc:
        raise _forms_must_exist() from exc
    await audit.record(conn, actor, "user.created", "user", username,
                       after=_user(username, forms))
    return forms


async def change_user(conn: Conn, actor: Actor, username: str, forms: list[str],
                      password_hash: str | None) -> list[str]:
    """Exactly these forms from now on (sorted, once each, as returned); a new password also
    revokes every auth key the user holds, as keys got with a leaked password must not
    outlive it."""
    forms = sorted(set(forms))
    if not await access_rows.lock_user(conn, username):
        raise _user_missing(username)
    before = await _stored_user(conn, username)
    try:
        await access_rows.set_user_forms(conn, username, forms)
    except asyncpg.ForeignKeyViolationError as exc:
        raise _forms_must_exist() from exc
    if password_hash is not None:
        await access_rows.set_password_hash(conn, username, password_hash)
        await access_rows.delete_all_auth_keys(conn, username)
    await audit.record(conn, actor, "user.updated", "user", username, before=before,
                       after=_user(username, forms, new_password=password_hash is not None))
    return forms


async def allow_on_form(conn: Conn, actor: Actor, form_id: str, allowed: set[str]) -> None:
    """Exactly the `allowed` users may get auth keys for the form; their other forms stay."""
    for user in await access_rows.list_users(conn):
        forms = set(user.forms)
        wanted = forms | {form_id} if user.username in allowed else forms - {form_id}
        if wanted != forms and await access_rows.lock_user(conn, user.username):
            await access_rows.set_user_forms(conn, user.username, sorted(wanted))
            await audit.record(conn, actor, "user.updated", "user", user.username,
                               before=_user(user.username, user.forms),
                               after=_user(user.username, sorted(wanted)))


async def delete_user(conn: Conn, actor: Actor, username: str) -> None:
    """The user goes, and every auth key of theirs with them."""
    if not await access_rows.lock_user(conn, username):
        raise _user_missing(username)
    before = await _stored_user(conn, username)
    await access_rows.delete_user(conn, username)
    await audit.record(conn, actor, "user.deleted", "user", username, before=before)
