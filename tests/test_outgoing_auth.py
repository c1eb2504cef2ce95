"""Outgoing auth beyond Basic (bearer, API key, OAuth2 client credentials) and headers of the
administrator's own: sent as configured, secrets encrypted at rest and masked everywhere shown,
against the real stack, a real receiver and a real OAuth2 token endpoint."""

import asyncio
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.dispatcher.auth import DEFAULT_LIFETIME_SECONDS, _lifetime
from shared.settings import Settings
from tests.helpers import AutomationFactory, FormFactory, call, new_case, until, webhook_action
from tests.receiver import Receiver, Reply
from tests.token_server import TokenServer

BEARER = "tok-3f9a-secret-bearer"
API_KEY = "key-77c1-secret-api-key"


async def finished_deliveries(api: aiohttp.ClientSession, automation_id: str,
                              count: int = 1) -> list[dict[str, Any]]:
    """The automation's finished deliveries, each with its attempts, once `count` finished."""

    async def listed() -> list[dict[str, Any]] | None:
        body = await call(api, "GET", "/api/deliveries", 200, params={
            "automation": automation_id, "state": "succeeded,failed"})
        return body["deliveries"] if len(body["deliveries"]) >= count else None

    return [await call(api, "GET", f"/api/deliveries/{d['id']}", 200)
            for d in await until(listed, within=20)]


async def stored_definition(settings: Settings, automation_id: str) -> str:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return str(await conn.fetchval("SELECT definition::text FROM automations WHERE id = $1",
                                       automation_id))
    finally:
        await conn.close()


@pytest.mark.parametrize(("auth", "header", "sent", "logged"), [
    ({"type": "bearer", "token": BEARER}, "Authorization", f"Bearer {BEARER}", "Bearer ***"),
    ({"type": "api_key", "header": "X-Api-Key", "key": API_KEY}, "X-Api-Key", API_KEY, "***"),
])
async def test_bearer_and_api_key_are_sent_encrypted_at_rest_and_masked_in_answers_and_log(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver, settings: Settings, auth: dict[str, str], header: str, sent: str,
        logged: str) -> None:
    hook, url = await make_form(), receiver.endpoint()
    secret = next(v for k, v in auth.items() if k in ("token", "key"))
    automation = await make_automation(hook["form_id"], url, action=webhook_action(
        url, auth=auth, headers={"X-Tenant": "acme", "Accept-Language": "sv"}))
    shown_auth = automation["action"]["settings"]["auth"]
    assert secret not in str(automation)
    masked = {k: "***" if k in ("token", "key") else v for k, v in auth.items()}
    assert shown_auth == masked
    assert secret not in await stored_definition(settings, automation["id"])
    await new_case(api, hook["form_id"])
    [seen] = await receiver.wait_for(url, 1)
    assert seen.headers[header] == sent
    assert (seen.headers["X-Tenant"], seen.headers["Accept-Language"]) == ("acme", "sv")
    [delivery] = await finished_deliveries(api, automation["id"])
    logged_headers = delivery["attempts"][0]["request"]["headers"]
    assert logged_headers[header] == logged
    assert logged_headers["X-Tenant"] == "acme"
    assert secret not in str(delivery)
    # "***" sent back keeps the stored secret: the next send still carries it.
    kept = await call(api, "PUT", f"/api/automations/{automation['id']}", 200, automation)
    assert kept["action"]["settings"]["auth"] == shown_auth
    await new_case(api, hook["form_id"])
    assert (await receiver.wait_for(url, 2))[1].headers[header] == sent


@pytest.mark.parametrize(("headers", "problem"), [
    ({"Content-Type": "text/plain"}, "set by Casewire"),
    ({"webhook-signature": "v1,x"}, "set by Casewire"),
    ({"Transfer-Encoding": "chunked"}, "set by Casewire"),
    ({"Authorization": "Bearer x"}, "use `auth`"),
    ({"X-Bad Name": "x"}, "not a valid header name"),
    ({"X-Split": "a\r\nX-Injected: b"}, "without line breaks"),
])
async def test_reserved_or_malformed_headers_are_refused_naming_the_setting(
        make_form: FormFactory, api: aiohttp.ClientSession, headers: dict[str, str],
        problem: str) -> None:
    hook = await make_form()
    body = {"name": "h", "when": [{"event": "case_created"}],
            "action": webhook_action("http://127.0.0.1:9/x", headers=headers)}
    answer = await call(api, "POST", f"/api/forms/{hook['form_id']}/automations", 400, body)
    [error] = answer["errors"]
    assert error["field"].startswith("action.settings.headers")
    assert problem in error["message"]


async def test_an_api_key_header_cannot_also_be_a_plain_header(
        make_form: FormFactory, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    body = {"name": "h", "when": [{"event": "case_created"}], "action": webhook_action(
        "http://127.0.0.1:9/x", auth={"type": "api_key", "header": "X-Key", "key": "k"},
        headers={"x-key": "plain"})}
    answer = await call(api, "POST", f"/api/forms/{hook['form_id']}/automations", 400, body)
    assert "carries the API key" in answer["errors"][0]["message"]


async def test_oauth2_one_token_serves_many_deliveries_and_is_masked(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver, settings: Settings) -> None:
    async with TokenServer.running() as tokens:
        hook, url = await make_form(), receiver.endpoint()
        automation = await make_automation(hook["form_id"], url, action=webhook_action(
            url, auth=tokens.credentials()))
        assert automation["action"]["settings"]["auth"]["client_secret"] == "***"
        assert tokens.client_secret not in await stored_definition(settings, automation["id"])
        await asyncio.gather(*(new_case(api, hook["form_id"]) for _ in range(12)))
        seen = await receiver.wait_for(url, 12)
        assert len(tokens.issued) == 1, "one fetch for every delivery in flight"
        assert {r.headers["Authorization"] for r in seen} == {f"Bearer {tokens.issued[0]}"}
        assert tokens.requests[0]["grant_type"] == "client_credentials"
        assert tokens.requests[0]["scope"] == "cases:write"
        assert tokens.requests[0]["authorization"].startswith("Basic ")
        deliveries = await finished_deliveries(api, automation["id"], 12)
        assert all(d["state"] == "succeeded" for d in deliveries)
        assert tokens.issued[0] not in str(deliveries)
        assert deliveries[0]["attempts"][0]["request"]["headers"]["Authorization"] == \
            "Bearer ***"


async def test_oauth2_a_refused_token_is_fetched_again_once_and_the_send_repeated(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    async with TokenServer.running() as tokens:
        hook = await make_form()
        url = receiver.endpoint(Reply(), Reply(status=401), Reply())
        automation = await make_automation(hook["form_id"], url, action=webhook_action(
            url, auth=tokens.credentials(client_auth="body"), attempts=1))
        await new_case(api, hook["form_id"])
        await receiver.wait_for(url, 1)
        await new_case(api, hook["form_id"])  # its cached token is refused (revoked) once
        seen = await receiver.wait_for(url, 3)
        assert len(tokens.issued) == 2
        assert [r.headers["Authorization"] for r in seen] == [
            f"Bearer {tokens.issued[0]}", f"Bearer {tokens.issued[0]}",
            f"Bearer {tokens.issued[1]}"]
        assert tokens.requests[1]["client_secret"] == tokens.client_secret  # client_auth body
        deliveries = await finished_deliveries(api, automation["id"], 2)
        assert [d["state"] for d in deliveries] == ["succeeded", "succeeded"]
        assert [len(d["attempts"]) for d in deliveries] == [1, 1]


async def test_oauth2_a_fresh_token_refused_is_not_fetched_again(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    async with TokenServer.running() as tokens:
        hook = await make_form()
        url = receiver.endpoint(Reply(status=401))
        automation = await make_automation(hook["form_id"], url, action=webhook_action(
            url, auth=tokens.credentials(), attempts=1))
        await new_case(api, hook["form_id"])
        [delivery] = await finished_deliveries(api, automation["id"])
        assert (delivery["state"], delivery["last_response_status"]) == ("failed", 401)
        assert len(receiver.at(url)) == 1
        assert len(tokens.issued) == 1


async def test_oauth2_a_token_is_renewed_shortly_before_it_expires(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    async with TokenServer.running(expires_in=2) as tokens:
        hook, url = await make_form(), receiver.endpoint()
        await make_automation(hook["form_id"], url, action=webhook_action(
            url, auth=tokens.credentials()))
        await new_case(api, hook["form_id"])
        await new_case(api, hook["form_id"])
        await receiver.wait_for(url, 2)
        assert len(tokens.issued) == 1
        await asyncio.sleep(2.0)  # renewed a tenth of its 2 s early: at 1.8 s
        await new_case(api, hook["form_id"])
        third = (await receiver.wait_for(url, 3))[2]
        assert len(tokens.issued) == 2
        assert third.headers["Authorization"] == f"Bearer {tokens.issued[1]}"


async def test_oauth2_wrong_credentials_fail_the_delivery_without_sending(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    async with TokenServer.running() as tokens:
        hook, url = await make_form(), receiver.endpoint()
        automation = await make_automation(hook["form_id"], url, action=webhook_action(
            url, auth=tokens.credentials(client_secret="wrong"), attempts=3))
        await new_case(api, hook["form_id"])
        [delivery] = await finished_deliveries(api, automation["id"])
        assert delivery["state"] == "failed"
        assert len(delivery["attempts"]) == 1, "a refused client is final"
        assert "token endpoint" in delivery["attempts"][0]["error"]
        assert "answered 401" in delivery["attempts"][0]["error"]
        assert receiver.at(url) == []


async def test_a_masked_secret_is_not_kept_when_the_token_url_moves(
        make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    url = "http://127.0.0.1:9/x"
    auth = {"type": "oauth2_client_credentials", "token_url": "http://127.0.0.1:9/token",
            "client_id": "c", "client_secret": "s3cret"}
    automation = await make_automation(hook["form_id"], url, action=webhook_action(
        url, auth=auth))
    moved = {**automation}
    moved["action"]["settings"]["auth"]["token_url"] = "http://127.0.0.2:9/token"
    answer = await call(api, "PUT", f"/api/automations/{automation['id']}", 400, moved)
    assert answer["errors"][0]["field"] == "action.settings.auth.client_secret"
    assert "another scheme, host or port" in answer["errors"][0]["message"]


@pytest.mark.parametrize(("answer", "lifetime"), [
    ({"expires_in": 3600}, 3540.0), ({"expires_in": 2}, 1.8), ({"expires_in": "120"}, 108.0),
    ({}, DEFAULT_LIFETIME_SECONDS), ({"expires_in": -5}, DEFAULT_LIFETIME_SECONDS)])
def test_a_token_is_kept_until_a_tenth_of_its_life_at_most_a_minute_early(
        answer: dict[str, Any], lifetime: float) -> None:
    assert _lifetime(answer) == pytest.approx(lifetime)


async def test_oauth2_an_unreachable_token_endpoint_is_retried_like_a_receiver(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook, url = await make_form(), receiver.endpoint()
    auth = {"type": "oauth2_client_credentials", "token_url": "http://127.0.0.1:9/token",
            "client_id": "c", "client_secret": "s"}
    automation = await make_automation(hook["form_id"], url, action=webhook_action(
        url, auth=auth, attempts=2))
    await new_case(api, hook["form_id"])
    [delivery] = await finished_deliveries(api, automation["id"])
    assert delivery["state"] == "failed"
    assert [a["number"] for a in delivery["attempts"]] == [1, 2]
    assert all("OAuth2 token request" in a["error"] for a in delivery["attempts"])
    assert receiver.at(url) == []


async def test_an_internal_token_url_and_too_many_headers_are_refused_at_save(
        make_form: FormFactory, api: aiohttp.ClientSession) -> None:
    hook = await make_form()
    path = f"/api/forms/{hook['form_id']}/automations"
    auth = {"type": "oauth2_client_credentials", "token_url": "http://10.1.2.3/token",
            "client_id": "c", "client_secret": "s"}
    body = {"name": "t", "when": [{"event": "case_created"}],
            "action": webhook_action("http://127.0.0.1:9/x", auth=auth)}
    [error] = (await call(api, "POST", path, 400, body))["errors"]
    assert error["field"] == "action.settings.auth.token_url"
    many = {f"X-H{n}": "v" for n in range(51)}
    body["action"] = webhook_action("http://127.0.0.1:9/x", headers=many)
    [error] = (await call(api, "POST", path, 400, body))["errors"]
    assert error["field"] == "action.settings.headers"
