"""Automations that would leak a secret, reach an internal address or exhaust the parser: a 400."""

from typing import Any

import aiohttp
import pytest

from services.dispatcher.ssrf import AddressPolicy, TargetRefused
from tests.helpers import basic, call, definition, new_form, with_settings

URL_FIELD = "action.settings.url"


def url_errors(answer: dict[str, Any]) -> list[str]:
    return [e["message"] for e in answer["errors"] if e["field"] == URL_FIELD]


# URL credentials: the auth settings exist for those, and keep the password write-only.

async def test_credentials_in_the_url_are_refused_on_create_and_update(
        api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    with_password = with_settings(definition(), url="https://crm:s3cret@crm.example/hook")
    refused = await call(api, "POST", f"/api/forms/{form_id}/automations", 400, with_password)
    [message] = url_errors(refused)
    assert "action.settings.auth" in message
    assert "s3cret" not in str(refused)
    created = await call(api, "POST", f"/api/forms/{form_id}/automations", 201, definition())
    user_only = with_settings(definition(), url="https://crm@crm.example/hook")
    assert url_errors(await call(api, "PUT", f"/api/automations/{created['id']}", 400,
                                 user_only))


# SSRF: internal IP literals are refused when saved, not only at every send.

@pytest.mark.parametrize("url", [
    "http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]:9/hook",
    "http://192.168.0.1/", "http://[fec0::1]/hook", "http://[::ffff:10.0.0.1]/",
    "http://100.64.0.1/", "http://0x0a000001/"])
async def test_an_internal_ip_literal_is_refused_on_create_and_update(
        url: str, api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    refused = await call(api, "POST", f"/api/forms/{form_id}/automations", 400,
                         with_settings(definition(), url=url))
    [message] = url_errors(refused)
    assert "target refused" in message
    created = await call(api, "POST", f"/api/forms/{form_id}/automations", 201, definition())
    assert url_errors(await call(api, "PUT", f"/api/automations/{created['id']}", 400,
                                 with_settings(definition(), url=url)))


async def test_allowed_networks_and_host_names_are_accepted_when_saved(
        api: aiohttp.ClientSession) -> None:
    """The tests allow 127.0.0.0/8 (CASEWIRE_OUTGOING_ALLOW_NETWORKS); names resolve at send."""
    form_id = await new_form(api)
    for url in ("http://127.0.0.1:9/hook", "https://crm.example/hook"):
        created = await call(api, "POST", f"/api/forms/{form_id}/automations", 201,
                             with_settings(definition(), url=url))
        assert created["action"]["settings"]["url"] == url


def test_site_local_ipv6_is_not_public() -> None:
    """fec0::/10 is deprecated, yet Python 3.11's ipaddress calls it global."""
    with pytest.raises(TargetRefused, match="site-local"):
        AddressPolicy([]).check("h", "fec0::1")
    AddressPolicy(["fec0::/10"]).check("h", "fec0::1")


# Keeping the stored password ("***") only while the password goes to the same origin.

@pytest.mark.parametrize("new_url", [
    "https://attacker.example/hook", "http://crm.example/hook", "https://crm.example:8443/hook"])
async def test_keeping_the_password_for_another_origin_is_refused(
        new_url: str, api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    body = with_settings(definition(), url="https://crm.example/hook", auth=basic("s3cret"))
    created = await call(api, "POST", f"/api/forms/{form_id}/automations", 201, body)
    path = f"/api/automations/{created['id']}"
    moved = with_settings(definition(), url=new_url, auth=basic("***"))
    errors = (await call(api, "PUT", path, 400, moved))["errors"]
    assert errors[0]["field"] == "action.settings.auth.password"
    assert "send the password again" in errors[0]["message"]
    await call(api, "PUT", path, 200, with_settings(moved, auth=basic("n3w")))


async def test_keeping_the_password_on_the_same_origin_still_works(
        api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    body = with_settings(definition(), url="https://crm.example/hook", auth=basic("s3cret"))
    created = await call(api, "POST", f"/api/forms/{form_id}/automations", 201, body)
    same_origin = with_settings(definition(), url="https://CRM.example:443/other?x=1",
                                auth=basic("***"))
    await call(api, "PUT", f"/api/automations/{created['id']}", 200, same_origin)


# `if` groups nest at most MAX_RULE_DEPTH deep: deeper would outgrow the JSON encoder's limits.

def nested_if(groups: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"field": "status", "op": "eq", "value": "closed"}
    for i in range(groups):
        rule = {"all" if i % 2 else "any": [rule]}
    return rule


@pytest.mark.parametrize(("groups", "says"), [
    (21, "at most 20"),
    # Past 64 levels of JSON (two per group) the body is refused as it is read (shared.bodies).
    (200, "JSON nested deeper than 64 levels"), (400, "JSON nested deeper than 64 levels")])
async def test_an_if_nested_too_deep_is_a_400_naming_if(
        groups: int, says: str, api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    answer = await call(api, "POST", f"/api/forms/{form_id}/automations", 400,
                        definition(**{"if": nested_if(groups)}))
    [error] = answer["errors"]
    assert error["field"] == "if"
    assert says in error["message"]
    created = await call(api, "POST", f"/api/forms/{form_id}/automations", 201, definition())
    answer = await call(api, "PUT", f"/api/automations/{created['id']}", 400,
                        definition(**{"if": nested_if(groups)}))
    assert answer["errors"][0]["field"] == "if"


async def test_an_if_nested_to_the_limit_is_stored_and_shown(api: aiohttp.ClientSession) -> None:
    form_id = await new_form(api)
    created = await call(api, "POST", f"/api/forms/{form_id}/automations", 201,
                         definition(**{"if": nested_if(20)}))
    assert created["if"] == nested_if(20)


def test_the_model_itself_refuses_a_deep_if_before_recursing() -> None:
    """The dispatcher and ingest parse stored definitions with the same model."""
    from pydantic import ValidationError

    from shared.automations import AutomationDefinition

    with pytest.raises(ValidationError, match="at most 20"):
        AutomationDefinition.model_validate(definition(**{"if": nested_if(5000)}))
