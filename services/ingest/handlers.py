"""The incoming-webhook contract of the seed: create a case, issue and revoke auth keys (the
routes' paths and bodies as described: shared/ingest_contract.py)."""

import uuid
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from services.ingest import idempotency
from services.ingest.answers import Published, failure, publish, unknown_webhook
from services.ingest.bodies import read_object
from services.ingest.idempotency import Verdict
from services.ingest.keys import CACHE, IDEMPOTENCY, LIMITER
from services.ingest.metrics import NOT_A_CASE, counted
from services.ingest.models import Hook, HookOptions
from services.ingest.repo import auth_key_user
from services.ingest.signatures import SIGNED_MESSAGE_ID, check_signature
from services.ingest.tokens import well_formed
from shared import ingest_contract as contract
from shared.addresses import CLIENT_HEADER, VIA_HEADER
from shared.clients import PROXIES
from shared.errors import DependencyUnavailable
from shared.event_payloads import CaseCreateRequested, IdempotencyKey
from shared.events import CASE_CREATE_REQUESTED, new_event
from shared.form_values import validate_case_data
from shared.secrets import digest
from shared.service import CASESTORE, POOL
from shared.web import BadRequest, RateLimited, Unavailable, Unprocessable, json_response

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

CREATOR = "Addon - Incoming Webhook"
CREDENTIAL_KEYS = {"username", "password"}
AUTH_KEYS_UNAVAILABLE = "auth keys cannot be handled right now; try again"


async def _resolve(request: web.Request) -> tuple[Hook, HookOptions]:
    options = HookOptions.parse(request.match_info.get("options", ""))
    token = request.match_info["token"]
    if options is None or not well_formed(token):
        raise unknown_webhook()
    hook = await request.app[CACHE].lookup(token)
    if hook is None:
        raise unknown_webhook()
    return hook, options


def _is_credentials(request: web.Request, hook: Hook, body: dict[str, Any]) -> bool:
    return (hook.authenticate_user and set(body) == CREDENTIAL_KEYS
            and "Auth-key" not in request.headers)


async def _forward_credentials(request: web.Request, hook: Hook, method: str,
                               body: dict[str, Any]) -> web.Response:
    """Auth keys live in casestore (the only writer); ingest forwards the seed's calls there."""
    url = f"/api/forms/{hook.form.id}/incoming-webhook/auth-keys"
    # casestore throttles failed logins per client address, so it must learn who the client is
    # (behind the Ingress: from X-Forwarded-For, through trusted proxies only).
    client = {CLIENT_HEADER: request.app[PROXIES].client(request),
              VIA_HEADER: "ingest: a webhook user's login"}
    try:
        async with request.app[CASESTORE].request(method, url, json=body,
                                                  headers=client) as resp:
            payload = await resp.read()
            status = resp.status
            retry_after = resp.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(AUTH_KEYS_UNAVAILABLE) from exc
    if status >= 500 or status in (401, 404):
        log.warning("auth_key_forward_failed", status=status)
        raise Unavailable(AUTH_KEYS_UNAVAILABLE)
    return web.Response(body=payload, status=status, content_type="application/json",
                        headers={"Retry-After": retry_after} if retry_after else None)


async def _auth_key_user(request: web.Request, hook: Hook) -> str | None:
    """The user of a valid Auth-key; raises DependencyUnavailable if it cannot be checked."""
    key = request.headers.get("Auth-key")
    if not key or not key.isascii():  # issued keys are URL-safe ASCII
        return None
    return await auth_key_user(request.app[POOL], digest(key), hook.webhook_id, hook.form.id)


def _idempotency_key(request: web.Request, hook: Hook, username: str | None,
                     data: dict[str, Any], options: HookOptions) -> IdempotencyKey | None:
    # A verified Standard Webhooks message id stands in for a key: a sender's retries of it
    # create one case (services/ingest/signatures.py).
    key = request.headers.get("Idempotency-Key") or request.get(SIGNED_MESSAGE_ID)
    if key is None:
        return None
    if not idempotency.valid_key(key):
        raise BadRequest.one("invalid_idempotency_key",
                             "Idempotency-Key must be 1 to 255 printable ASCII characters")
    return idempotency.claim(hook, username, key, data, options,
                             request.app[IDEMPOTENCY].ttl_seconds)


async def _user(request: web.Request, hook: Hook) -> str | None:
    """The Auth-key's user on a webhook that authenticates users, else None."""
    if not hook.authenticate_user:
        return None
    try:
        username = await _auth_key_user(request, hook)
    except DependencyUnavailable as exc:
        raise Unavailable("the Auth-key cannot be checked right now (nothing was created); "
                          "try again") from exc
    if not username:
        raise BadRequest.one("access_deny", "a valid Auth-key header is required for this form")
    return username


@contract.serving(routes, contract.create_case)
@counted
async def create_case(request: web.Request) -> web.Response:
    hook, options = await _resolve(request)
    wait = request.app[LIMITER].acquire(str(hook.webhook_id))
    if wait:
        raise RateLimited("too many requests for this webhook", retry_after=wait)
    await check_signature(request, hook)
    body = await read_object(request)
    if options == HookOptions() and _is_credentials(request, hook, body):
        request[NOT_A_CASE] = True
        return await _forward_credentials(request, hook, "POST", body)
    username = await _user(request, hook)
    data, errors = validate_case_data(hook.form, body, check_mandatory=not options.skip_validate,
                                      first_section_only=True)
    if errors:
        raise BadRequest(errors)
    key = _idempotency_key(request, hook, username, data, options)
    command = CaseCreateRequested(webhook_id=hook.webhook_id, data=data, creator=CREATOR,
                                  skip_triggers=options.skip_triggers,
                                  skip_validate=options.skip_validate,
                                  form_revision=hook.form.revision, idempotency_key=key)
    return await _accept(request, hook, command)


async def _accept(request: web.Request, hook: Hook,
                  command: CaseCreateRequested) -> web.Response:
    """Publish the command, unless its Idempotency-Key says it was accepted already."""
    keys, key = request.app[IDEMPOTENCY], command.idempotency_key
    verdict = Verdict.NEW if key is None else await keys.verdict(request.app[POOL], key)
    if verdict is Verdict.REUSED:
        raise Unprocessable("this Idempotency-Key came with a different body before; use a new "
                            "key for a new case", code="idempotency_key_reused")
    if verdict is Verdict.REPEAT:
        log.info("case_already_accepted", form_id=hook.form.id)
        return json_response({})
    event_id = uuid.uuid4()  # casestore dedupes keyed commands by key, not by event id
    event = new_event(CASE_CREATE_REQUESTED, command, form_id=hook.form.id, case_id=event_id,
                      event_id=event_id)
    outcome = await publish(request, event)
    if key is not None:
        keys.remember(key, outcome)
    if outcome is not Published.CONFIRMED:
        raise failure(outcome, "the case")
    log.info("case_accepted", form_id=hook.form.id, event_id=str(event.id))
    return json_response({})


@contract.serving(routes, contract.revoke_auth_keys)
async def revoke_auth_keys(request: web.Request) -> web.Response:
    hook, _ = await _resolve(request)
    await check_signature(request, hook)
    body = await read_object(request)
    if not hook.authenticate_user or set(body) != CREDENTIAL_KEYS:
        raise BadRequest.one("access_deny", "send {\"username\": ..., \"password\": ...} to a "
                             "webhook with user authentication on")
    return await _forward_credentials(request, hook, "DELETE", body)
