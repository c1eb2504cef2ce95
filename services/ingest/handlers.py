"""The incoming-webhook contract of the seed: create a case, issue and revoke auth keys."""

import re
import uuid
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from services.ingest.answers import Published, bad, failure, not_found, publish, unavailable
from services.ingest.bodies import read_object
from services.ingest.keys import CACHE, LIMITER
from services.ingest.models import Hook, HookOptions
from services.ingest.ratelimit import RateLimiter
from services.ingest.repo import auth_key_user
from services.ingest.tokens import well_formed
from shared.errors import DependencyUnavailable
from shared.events import CASE_CREATE_REQUESTED, CaseCreateRequested, new_event
from shared.forms import validate_case_data
from shared.secrets import digest
from shared.service import CASESTORE, POOL
from shared.web import error_body, json_response

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

CREATOR = "Addon - Incoming Webhook"
CREDENTIAL_KEYS = {"username", "password"}
IDEMPOTENCY_NAMESPACE = uuid.UUID("5f1c0d7e-2b7a-4c39-9a57-4f0b8c1e6d21")
IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")


async def _resolve(request: web.Request) -> tuple[Hook, HookOptions]:
    options = HookOptions.parse(request.match_info.get("options", ""))
    token = request.match_info["token"]
    if options is None or not well_formed(token):
        raise not_found()
    hook = await request.app[CACHE].lookup(token)
    if hook is None:
        raise not_found()
    return hook, options


def _is_credentials(request: web.Request, hook: Hook, body: dict[str, Any]) -> bool:
    return (hook.authenticate_user and set(body) == CREDENTIAL_KEYS
            and "Auth-key" not in request.headers)


async def _forward_credentials(request: web.Request, hook: Hook, method: str,
                               body: dict[str, Any]) -> web.Response:
    """Auth keys live in casestore (the only writer); ingest forwards the seed's calls there."""
    url = f"/api/forms/{hook.form.id}/incoming-webhook/auth-keys"
    try:
        async with request.app[CASESTORE].request(method, url, json=body) as resp:
            payload = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError):
        return unavailable("auth keys cannot be handled right now; try again")
    if status >= 500 or status in (401, 404):
        log.warning("auth_key_forward_failed", status=status)
        return unavailable("auth keys cannot be handled right now; try again")
    return web.Response(body=payload, status=status, content_type="application/json")


async def _auth_key_user(request: web.Request, hook: Hook) -> str | None:
    """The user of a valid Auth-key; raises DependencyUnavailable if it cannot be checked."""
    key = request.headers.get("Auth-key")
    if not key or not key.isascii():  # issued keys are URL-safe ASCII
        return None
    return await auth_key_user(request.app[POOL], digest(key), hook.webhook_id, hook.form.id)


def _event_id(request: web.Request, hook: Hook) -> uuid.UUID | web.Response:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return uuid.uuid4()
    # Bytes that are not UTF-8 arrive as surrogate escapes; they, control characters and
    # non-ASCII text are refused here rather than crash hashing, JSON or a log line later.
    if IDEMPOTENCY_KEY.fullmatch(key) is None:
        return bad("invalid_idempotency_key",
                   "Idempotency-Key must be 1 to 255 printable ASCII characters")
    # Same webhook and key give the same event id, and casestore applies an event id once.
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{hook.webhook_id}:{key}")


@routes.post("/hooks/{token}")
@routes.post("/hooks/{token}/{options:.+}")
async def create_case(request: web.Request) -> web.Response:
    hook, options = await _resolve(request)
    wait = request.app[LIMITER].acquire(hook.token)
    if wait:
        return json_response(error_body("rate_limited", "too many requests for this webhook"),
                             status=429, headers={"Retry-After": RateLimiter.retry_after(wait)})
    body = await read_object(request)
    if isinstance(body, web.Response):
        return body
    if options == HookOptions() and _is_credentials(request, hook, body):
        return await _forward_credentials(request, hook, "POST", body)
    username = None
    if hook.authenticate_user:
        try:
            username = await _auth_key_user(request, hook)
        except DependencyUnavailable:
            return unavailable("the Auth-key cannot be checked right now (nothing was created); "
                               "try again")
        if username is None:
            return bad("access_deny", "a valid Auth-key header is required for this form")
    data, errors = validate_case_data(hook.form, body, check_mandatory=not options.skip_validate,
                                      first_section_only=True)
    if errors:
        return json_response({"errors": [e.model_dump() for e in errors]}, status=400)
    event_id = _event_id(request, hook)
    if isinstance(event_id, web.Response):
        return event_id
    command = CaseCreateRequested(webhook_id=hook.webhook_id, data=data, creator=CREATOR,
                                  skip_triggers=options.skip_triggers,
                                  skip_validate=options.skip_validate)
    event = new_event(CASE_CREATE_REQUESTED, command, form_id=hook.form.id, case_id=event_id,
                      event_id=event_id)
    outcome = await publish(request, event)
    if outcome is not Published.CONFIRMED:
        return failure(outcome, "the case")
    log.info("case_accepted", form_id=hook.form.id, event_id=str(event_id))
    return json_response({})


@routes.delete("/hooks/{token}")
async def revoke_auth_keys(request: web.Request) -> web.Response:
    hook, _ = await _resolve(request)
    body = await read_object(request)
    if isinstance(body, web.Response):
        return body
    if not hook.authenticate_user or set(body) != CREDENTIAL_KEYS:
        return bad("access_deny", "send {\"username\": ..., \"password\": ...} to a webhook "
                    "with user authentication on")
    return await _forward_credentials(request, hook, "DELETE", body)
