"""Automations as casestore stores and shows them: write-only auth secrets, signing secrets,
authors.

Auth secrets (a password, token, API key or client secret) and signing secrets are stored
encrypted (shared/crypto.py): sealed here on every write, the signing secret revealed in API
answers, the auth secret never.
"""

import uuid
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import ValidationError

from services.casestore.actors import Actor
from services.casestore.errors import ValidationFailed
from services.casestore.repo import Conn
from services.casestore.repo import automations as automation_rows
from services.casestore.repo import schedule as schedule_rows
from shared.addresses import AddressPolicy, TargetRefused
from shared.automation_rules import too_deep
from shared.automations import AutomationDefinition
from shared.bodies import refuse_big_ints
from shared.crypto import SecretBox
from shared.field_paths import field_path
from shared.forms import FieldError
from shared.outgoing_auth import secret_key, with_secret

AUTH_FIELD = "action.settings.auth"
URL_FIELD = "action.settings.url"
DEFAULT_PORTS = {"http": 80, "https": 443}
# Keys of an API answer that are not part of the definition: a GET answer can be edited and sent
# back as it is. The secret changes only through rotate-secret, `enabled` is read separately.
READ_ONLY = ("id", "form_id", "secret", "created_at", "updated_at", "disabled_reason",
             "disabled_at", "previous_secret_until", "health")
SECRET_BOX = web.AppKey("secret_box", SecretBox)


def _auth(definition: dict[str, Any]) -> dict[str, Any]:
    auth: dict[str, Any] = definition["action"]["settings"]["auth"]
    return auth


def parse_body(payload: Any) -> tuple[AutomationDefinition, bool | None]:
    """The definition and the optional `enabled` of a POST or PUT body; 400 on any problem."""
    if not isinstance(payload, dict):
        raise ValidationFailed([FieldError(field=None, code="invalid",
                                           message="expected a JSON object")])
    body = {k: v for k, v in payload.items() if k not in READ_ONLY}
    refuse_big_ints(body)
    problem = too_deep(body.get("if"))
    if problem:
        raise ValidationFailed([FieldError(field="if", code="invalid", message=problem)])
    enabled = body.pop("enabled", None)
    errors = []
    if enabled is not None and not isinstance(enabled, bool):
        errors.append(FieldError(field="enabled", code="invalid", message="expected true or false"))
    try:
        definition = AutomationDefinition.model_validate(body)
    except ValidationError as exc:
        errors.extend(FieldError(field=field_path(e["loc"], body), code="invalid",
                                 message=e["msg"]) for e in exc.errors(include_url=False))
    if errors:
        raise ValidationFailed(errors)
    return definition, enabled


def url_problems(definition: AutomationDefinition, policy: AddressPolicy) -> list[FieldError]:
    """What is wrong with the target URL before anything is sent to it.

    Credentials in the URL would be stored and shown in clear (the auth settings keep a
    password write-only). An internal IP literal is refused now rather than at every send;
    host names are checked by the dispatcher on the addresses they resolve to.
    """
    url = definition.action.settings.url
    problems = []
    if url.username or url.password:
        problems.append(FieldError(
            field=URL_FIELD, code="invalid",
            message="credentials in the URL would be shown in clear; put them in "
                    "action.settings.auth ({\"type\": \"basic\", ...}) instead"))
    token_url = getattr(definition.action.settings.auth, "token_url", None)
    targets = [(URL_FIELD, url), (f"{AUTH_FIELD}.token_url", token_url)]
    for where, target in ((w, t) for w, t in targets if t is not None):
        try:
            policy.check_literal(target.host or "")
        except TargetRefused as exc:
            problems.append(FieldError(field=where, code="invalid", message=str(exc)))
    return problems


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(
        parts.scheme)


def _destinations(definition: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    """Where the secret goes: the webhook's origin, and an OAuth2 token endpoint's."""
    auth = _auth(definition)
    urls = [definition["action"]["settings"]["url"], auth.get("token_url")]
    return [_origin(url) for url in urls if isinstance(url, str)]


def _kept_secret(stored: dict[str, Any], previous: dict[str, Any] | None) -> str:
    """The stored secret a masked one stands for, if it may go where the new URLs point."""
    auth = _auth(stored)
    key = secret_key(auth)
    assert key is not None  # only an auth with a secret has one masked
    kept = _auth(previous) if previous is not None else {}
    where = f"{AUTH_FIELD}.{key}"
    if kept.get("type") != auth["type"] or not isinstance(kept.get(key), str):
        raise ValidationFailed([FieldError(
            field=where, code="invalid",
            message=f"'{automation_rows.MASK}' keeps the stored {key}, but no {key} is "
                    f"stored for {auth['type']} auth; send the {key} itself")])
    assert previous is not None
    # Whoever may change a URL must not be able to send the stored secret elsewhere.
    if _destinations(stored) != _destinations(previous):
        raise ValidationFailed([FieldError(
            field=where, code="invalid",
            message="the URL (or token URL) now points to another scheme, host or port, so "
                    f"'{automation_rows.MASK}' cannot keep the stored {key}: send the {key} "
                    "again")])
    return str(kept[key])


def stored_definition(definition: AutomationDefinition, previous: dict[str, Any] | None,
                      box: SecretBox) -> dict[str, Any]:
    """What to store: the definition with its auth secret encrypted (a masked one: the stored
    secret, re-encrypted with the current key)."""
    stored = definition.public()

    def seal(secret: str) -> str:
        if secret == automation_rows.MASK:
            return box.rotate(_kept_secret(stored, previous))
        return box.encrypt(secret)

    return with_secret(stored, seal)


async def reencrypt_secrets(conn: Conn, box: SecretBox) -> int:
    """Encrypt every stored password and secret with the first key; how many rows changed.

    Legacy plaintext values are encrypted for the first time. Run in a transaction.
    """
    changed = 0
    for row in await automation_rows.all_automations(conn, lock=True):
        previous = box.rotate(row.previous_secret) if row.previous_secret else None
        await automation_rows.set_automation_secrets(conn, row.id,
                                                     with_secret(row.definition, box.rotate),
                                                     box.rotate(row.secret), previous)
        changed += 1
    return changed


def author(row: automation_rows.AutomationRow | None, automation_id: uuid.UUID) -> str:
    """How a change written by an automation is signed in the case history."""
    if row is None:
        return f"Automation {automation_id}"  # deleted since it sent the request
    return f"Automation: {row.definition['name']}"


def shown_to(actor: Actor, row: automation_rows.AutomationRow, box: SecretBox,
             health: schedule_rows.HealthRow | None = None) -> dict[str, Any]:
    """The automation as `actor` may see it: a viewer gets the signing secret masked (the auth
    secret is masked for everyone)."""
    shown = row.to_api(box, health)
    if not actor.sees_secrets:
        shown["secret"] = automation_rows.MASK
    return shown
