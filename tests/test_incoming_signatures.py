"""Signed incoming webhooks: Standard Webhooks (signed with the real `standardwebhooks`
package) and GitHub-style HMAC-SHA256, against the running ingest; the seed's token URL,
suffixes and auth keys keep working beside them."""

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
from standardwebhooks.webhooks import Webhook

from shared.settings import Settings
from tests.console_helpers import signed_in
from tests.helpers import FormFactory, call, until, wait_for_cases
from tests.stack import Stack

BODY = orjson.dumps({"text-field": "signed"})


async def verify_with(api: aiohttp.ClientSession, hook: dict[str, Any],
                      verify: dict[str, Any] | None) -> dict[str, Any]:
    answer: dict[str, Any] = await call(
        api, "PUT", f"/api/forms/{hook['form_id']}/incoming-webhook", 200,
        {"verify": verify, "authenticate_user": hook["authenticate_user"]})
    return answer


async def post(http: aiohttp.ClientSession, url: str, headers: dict[str, str],
               body: bytes = BODY) -> tuple[int, Any]:
    async with http.post(url, data=body, headers={"Content-Type": "application/json",
                                                  **headers}) as resp:
        return resp.status, await resp.json()


def signed(secret: str, body: bytes = BODY, msg_id: str | None = None,
           at: datetime | None = None) -> dict[str, str]:
    """Standard Webhooks headers as a sender using the `standardwebhooks` package makes them."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, body)}


NO_CASE = b'{"no-such-field": 1}'  # a 400 where no signature is checked: never a case


async def refused_unsigned(http: aiohttp.ClientSession, url: str) -> None:
    """Until ingest has the new settings (form.changed travels a moment)."""
    async def refused() -> bool:
        return (await post(http, url, {}, NO_CASE))[0] == 401
    await until(refused, failure="unsigned requests were still accepted")


async def test_standard_webhooks_signed_requests_create_cases_and_others_get_401(
        make_form: FormFactory, api: aiohttp.ClientSession, http: aiohttp.ClientSession,
        settings: Settings) -> None:
    hook = await make_form()
    shown = await verify_with(api, hook, {"scheme": "standard-webhooks"})
    secret = shown["verify"]["secret"]
    assert secret.startswith("whsec_")
    assert shown["verify"]["tolerance_seconds"] == 300
    assert await call(api, "GET", f"/api/forms/{hook['form_id']}/incoming-webhook",
                      200) == shown
    await refused_unsigned(http, hook["url"])
    assert await post(http, hook["url"], {}) == (401, {"errors": [{
        "field": None, "code": "signature_missing",
        "message": "this webhook takes only requests signed per Standard Webhooks: "
                   "webhook-id, webhook-timestamp and webhook-signature"}]})
    assert await post(http, hook["url"], signed(secret)) == (200, {})
    assert await post(http, hook["url"] + "/skipvalidate", signed(secret)) == (200, {})
    tampered = signed(secret)
    status, answer = await post(http, hook["url"], tampered, BODY.replace(b"signed", b"forged"))
    assert (status, answer["errors"][0]["code"]) == (401, "signature_invalid")
    other = signed(f"whsec_{'A' * 43}=")
    assert (await post(http, hook["url"], other))[1]["errors"][0]["code"] == \
        "signature_invalid"
    old = signed(secret, at=datetime.now(UTC) - timedelta(minutes=6))
    status, answer = await post(http, hook["url"], old)
    assert (status, answer["errors"][0]["code"]) == (401, "signature_expired")
    await wait_for_cases(api, hook["form_id"], 2)
    conn = await asyncpg.connect(settings.database_url)
    try:
        stored = await conn.fetchval("SELECT verify_secret FROM incoming_webhooks"
                                     " WHERE form_id = $1", hook["form_id"])
    finally:
        await conn.close()
    assert "whsec_" not in stored


async def test_a_replayed_or_retried_standard_webhooks_message_creates_one_case(
        make_form: FormFactory, api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    secret = (await verify_with(api, hook, {"scheme": "standard-webhooks"}))["verify"]["secret"]
    await refused_unsigned(http, hook["url"])
    headers = signed(secret, msg_id="msg_order-1001")
    for _ in range(3):  # the sender's retries, or a replay within the tolerance
        assert await post(http, hook["url"], headers) == (200, {})
    svix = {k.replace("webhook-", "svix-"): v for k, v in signed(secret).items()}
    assert await post(http, hook["url"], svix) == (200, {})
    await wait_for_cases(api, hook["form_id"], 2)


async def test_a_senders_own_secret_is_kept_and_left_out_verify_stays(
        make_form: FormFactory, api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    hook = await make_form()
    own = "whsec_" + "MfKQ9r8GKYqXTwJgPqGcyrvTsBnLsEpr"
    shown = await verify_with(api, hook, {"scheme": "standard-webhooks", "secret": own,
                                          "tolerance_seconds": 60})
    assert shown["verify"]["secret"] == own
    path = f"/api/forms/{hook['form_id']}/incoming-webhook"
    again = await call(api, "PUT", path, 200, {"enabled": True})
    assert again["verify"] == shown["verify"]
    await refused_unsigned(http, hook["url"])
    assert await post(http, hook["url"], signed(own)) == (200, {})
    assert (await verify_with(api, hook, None))["verify"] is None

    async def accepted_unsigned() -> bool:
        return (await post(http, hook["url"], {}, NO_CASE))[0] == 400
    await until(accepted_unsigned, failure="verification was never removed")


def github(secret: str, body: bytes = BODY) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}


async def test_github_style_hmac_signatures_are_checked_and_the_secret_is_write_only(
        make_form: FormFactory, api: aiohttp.ClientSession, http: aiohttp.ClientSession,
        stack: Stack) -> None:
    hook = await make_form()
    secret = "it's a secret to everybody"
    verify = {"scheme": "hmac-sha256", "header": "X-Hub-Signature-256", "prefix": "sha256=",
              "secret": secret}
    shown = await verify_with(api, hook, verify)
    assert shown["verify"] == {**verify, "encoding": "hex", "secret": "***"}
    kept = await verify_with(api, hook, shown["verify"])  # "***" keeps the stored secret
    assert kept["verify"]["secret"] == "***"
    await refused_unsigned(http, hook["url"])
    async with signed_in(stack) as console:
        page = await console.page(f"/console/forms/{hook['form_id']}/webhook")
    assert "every request must be signed (hmac-sha256, in X-Hub-Signature-256)" in page
    assert secret not in page
    assert await post(http, hook["url"], github(secret)) == (200, {})
    status, answer = await post(http, hook["url"], github(secret, b'{"text-field": "x"}'))
    assert (status, answer["errors"][0]["code"]) == (401, "signature_invalid")
    status, answer = await post(http, hook["url"], github("wrong"))
    assert (status, answer["errors"][0]["code"]) == (401, "signature_invalid")
    missing = await post(http, hook["url"], {"X-Other": "1"})
    assert missing[1]["errors"][0]["code"] == "signature_missing"
    await wait_for_cases(api, hook["form_id"], 1)
    path = f"/api/forms/{hook['form_id']}/incoming-webhook"
    bad = await call(api, "PUT", path, 400, {"verify": {"scheme": "standard-webhooks",
                                                        "secret": "not-whsec"}})
    assert bad["errors"][0]["field"].startswith("verify.secret")
    for tolerance in (0, 3601):
        wrong = await call(api, "PUT", path, 400, {"verify": {
            "scheme": "standard-webhooks", "tolerance_seconds": tolerance}})
        assert wrong["errors"][0]["field"] == "verify.tolerance_seconds"
    await verify_with(api, hook, None)
    nothing_kept = await call(api, "PUT", path, 400, {"verify": shown["verify"]})
    assert nothing_kept["errors"][0]["field"] == "verify.secret"


async def test_auth_key_calls_on_a_signed_webhook_need_the_signature_too(
        make_form: FormFactory, api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    hook = await make_form(authenticate_user=True)
    secret = (await verify_with(api, hook, {"scheme": "standard-webhooks"}))["verify"]["secret"]
    user = {"username": f"u-{uuid.uuid4().hex[:8]}", "password": "correct horse battery"}
    await call(api, "POST", "/api/users", 201, {**user, "forms": [hook["form_id"]]})
    credentials = orjson.dumps(user)
    await refused_unsigned(http, hook["url"])
    status, answer = await post(http, hook["url"], signed(secret, credentials), credentials)
    assert status == 200, answer
    key = answer["auth_key"]
    body = orjson.dumps({"text-field": "with key"})
    status, _ = await post(http, hook["url"], {**signed(secret, body), "Auth-key": key}, body)
    assert status == 200
    async with http.delete(hook["url"], data=credentials) as resp:
        assert resp.status == 401
