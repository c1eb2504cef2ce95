"""The Python recipes of docs/ work as written: each protocol's verification recipe verifies
real sends (and refuses tampered ones), and the documented `verify()` call fails on a form body
and a query string as the page warns; the signing recipes make requests a signed incoming
webhook accepts."""

import json
from typing import Any

import aiohttp
import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.helpers import (
    AutomationFactory,
    FormFactory,
    call,
    doc_snippet,
    new_case,
    until,
    wait_for_cases,
    webhook_action,
)
from tests.receiver import Received, Receiver

OUTGOING = "docs/outgoing-webhooks.md"
INCOMING = "docs/incoming-webhooks.md"


async def one_send(make_form: FormFactory, make_automation: AutomationFactory,
                   api: aiohttp.ClientSession, receiver: Receiver, url: str,
                   **settings: Any) -> tuple[str, Received]:
    hook = await make_form()
    action = webhook_action(url, **settings)
    action["content"].append({"key": "tags", "field": "tags"})
    automation = await make_automation(hook["form_id"], url, action=action)
    await new_case(api, hook["form_id"], {"text-field": "Zoë & co = 100%", "tags": ["a", "c"]})
    [seen] = await receiver.wait_for(url, 1)
    return automation["secret"], seen


@pytest.mark.parametrize("protocol", ["json", "json_array"])
async def test_the_json_recipe_verifies_a_real_send(
        protocol: str, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    verify_json = doc_snippet(OUTGOING, "verify-json")["verify_json"]
    secret, seen = await one_send(make_form, make_automation, api, receiver,
                                  receiver.endpoint(), protocol=protocol)
    payload = verify_json(secret, seen.headers, seen.body)
    assert (payload[0] if protocol == "json_array" else payload)["text"] == "Zoë & co = 100%"
    with pytest.raises(WebhookVerificationError):
        verify_json(secret, seen.headers, seen.body.replace(b"100", b"999"))


async def test_the_form_recipe_verifies_a_real_send_where_the_plain_call_fails(
        make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    verify_form = doc_snippet(OUTGOING, "verify-form-body")["verify_form"]
    secret, seen = await one_send(make_form, make_automation, api, receiver,
                                  receiver.endpoint(), protocol="form")
    assert verify_form(secret, seen.headers, seen.body)["text"] == ["Zoë & co = 100%"]
    with pytest.raises(json.JSONDecodeError):
        Webhook(secret).verify(seen.body, seen.headers)  # the trap the page warns of
    with pytest.raises(WebhookVerificationError):
        verify_form(secret, seen.headers, seen.body + b"&text=forged")


async def test_the_get_recipe_verifies_the_raw_query_of_a_real_send(
        make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    verify_get = doc_snippet(OUTGOING, "verify-get")["verify_get"]
    url = receiver.endpoint() + "?token=a%2Fb"
    secret, seen = await one_send(make_form, make_automation, api, receiver, url,
                                  method="GET")
    fields = verify_get(secret, seen.headers, seen.query_string)
    assert (fields["token"], fields["text"], fields["tags"]) == (
        ["a/b"], ["Zoë & co = 100%"], ["a", "c"])
    with pytest.raises(json.JSONDecodeError):
        Webhook(secret).verify(seen.query_string.encode(), seen.headers)
    # What a framework decoded is not what was signed.
    decoded = "&".join(f"{k}={v}" for k, v in seen.query.items())
    with pytest.raises(WebhookVerificationError):
        verify_get(secret, seen.headers, decoded)


async def test_the_signing_recipes_make_requests_a_signed_webhook_accepts(
        make_form: FormFactory, api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    signed_headers = doc_snippet(INCOMING, "sign-standard-webhooks")["signed_headers"]
    github_headers = doc_snippet(INCOMING, "sign-hmac-sha256")["github_headers"]

    def headers_for(shown: dict[str, Any], body: bytes) -> dict[str, str]:
        if shown["verify"]["scheme"] == "standard-webhooks":
            return dict(signed_headers(shown["verify"]["secret"], body))
        return dict(github_headers("s3cret", body))

    for verify in ({"scheme": "standard-webhooks"},
                   {"scheme": "hmac-sha256", "secret": "s3cret"}):
        hook = await make_form()
        shown = await call(api, "PUT", f"/api/forms/{hook['form_id']}/incoming-webhook", 200,
                           {"verify": verify})
        bad = b'{"no-such-field": 1}'

        async def refused(url: str = hook["url"], body: bytes = bad) -> bool:
            async with http.post(url, data=body) as resp:
                return resp.status == 401

        await until(refused)
        body = orjson.dumps({"text-field": "signed"})
        async with http.post(hook["url"], data=body,
                             headers=headers_for(shown, body)) as resp:
            assert resp.status == 200, await resp.text()
        await wait_for_cases(api, hook["form_id"], 1)
