"""Outgoing webhooks end to end: a case event in casestore, a request at a real receiver.

Each test names the seed statement (or SPEC line) it holds Casewire to.
"""

import asyncio
import base64
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.dispatcher.bundling import BUNDLE_LIMIT
from shared.settings import Settings
from tests.faults import replaced
from tests.helpers import (
    RESPONSE_FORM_FIELDS,
    AutomationFactory,
    EventTap,
    FormFactory,
    case_when,
    get_case,
    new_case,
    patch_case,
    wait_for_cases,
    webhook_action,
    with_response,
)
from tests.receiver import Receiver, Reply
from tests.stack import Stack
from tests.test_pipeline_metrics import reaches, scrape, value

FINISHED = ("succeeded", "failed")


async def deliveries(api: aiohttp.ClientSession, count: int, within: float = 15.0,
                     **params: str) -> list[dict[str, Any]]:
    """Poll the delivery log until `count` deliveries match the filters, all finished."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        async with api.get("/api/deliveries", params=params) as resp:
            assert resp.status == 200, await resp.text()
            found: list[dict[str, Any]] = (await resp.json())["deliveries"]
        done = all(d["state"] in FINISHED for d in found)
        if (len(found) >= count and done) or asyncio.get_running_loop().time() > deadline:
            assert len(found) == count, found
            return found
        await asyncio.sleep(0.1)


async def delivery(api: aiohttp.ClientSession, delivery_id: str) -> dict[str, Any]:
    async with api.get(f"/api/deliveries/{delivery_id}") as resp:
        assert resp.status == 200, await resp.text()
        found: dict[str, Any] = await resp.json()
    return found


async def quiet(receiver: Receiver, url: str, expected: int, settle: float = 1.0) -> None:
    """Nothing more than `expected` requests arrives (a negative check, so it has to wait)."""
    await asyncio.sleep(settle)
    assert len(receiver.at(url)) == expected


# Seed: "selected case and metadata can be sent to an external system ... when a case is
# created"; "Under Content, select which fields ... You can also create custom fields".

async def test_case_created_sends_fields_metadata_constants_and_templates(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    action = webhook_action(url)
    action["content"] = [
        {"key": "caseNumber", "meta": "case_number"}, {"key": "status", "meta": "status"},
        {"key": "creator", "meta": "creator"}, {"key": "form", "meta": "form_id"},
        {"key": "title", "field": "text-field"}, {"key": "amount", "field": "amount"},
        {"key": "source", "value": "casewire"},
        {"key": "summary", "template": "Case #{case_number}: {field:text-field} ({status})"}]
    await make_automation(hook["form_id"], url, action=action)
    case = await new_case(api, hook["form_id"], amount=12)
    [request] = await receiver.wait_for(url, 1)
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "caseNumber": case["case_number"], "status": "registered", "creator": "Admin API",
        "form": hook["form_id"], "title": "hello", "amount": 12, "source": "casewire",
        "summary": f"Case #{case['case_number']}: hello (registered)"}


async def test_webhook_created_cases_fire_too(
        make_form: FormFactory, make_automation: AutomationFactory, http: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await make_automation(hook["form_id"], url)
    async with http.post(hook["url"], json={"text-field": "from outside"}) as resp:
        assert resp.status == 200
    [request] = await receiver.wait_for(url, 1)
    assert request.json() == {"caseNumber": 1, "text": "from outside"}


# Seed: "include 'skiptriggers' in the address" and "Outgoing webhooks cannot be triggered when
# a case is deleted".

async def test_skiptriggers_suppresses_every_automation(
        make_form: FormFactory, make_automation: AutomationFactory, http: aiohttp.ClientSession,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await make_automation(hook["form_id"], url)
    for suffix in ("/skiptriggers", "/skipvalidate/skiptriggers", ""):
        async with http.post(hook["url"] + suffix, json={"text-field": suffix or "plain"}) as resp:
            assert resp.status == 200
    [request] = await receiver.wait_for(url, 1)
    assert request.json()["text"] == "plain"
    await wait_for_cases(api, hook["form_id"], 3)
    await quiet(receiver, url, 1)


async def test_deleting_a_case_never_fires(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    when = [{"event": e} for e in ("case_changed", "status_changed")]
    await make_automation(hook["form_id"], url, when=when)
    case = await new_case(api, hook["form_id"])
    async with api.delete(f"/api/cases/{case['id']}") as resp:
        assert resp.status == 200
    await quiet(receiver, url, 0)


# SPEC 3: When events on an existing case, If on the case as it now is.

async def test_field_changed_with_if_fires_only_when_the_condition_holds(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await make_automation(
        hook["form_id"], url, when=[{"event": "field_changed", "fields": ["priority"]}],
        **{"if": {"all": [{"field": "priority", "op": "eq", "value": "high"},
                          {"field": "priority", "op": "changed_from", "value": "low"}]}})
    case = await new_case(api, hook["form_id"], priority="low")
    await patch_case(api, case["id"], data={"amount": 3})  # another field: no fire
    await patch_case(api, case["id"], data={"priority": "high"})  # low -> high: fires
    await patch_case(api, case["id"], data={"priority": "low"})  # condition false
    [request] = await receiver.wait_for(url, 1)
    assert request.json()["caseNumber"] == case["case_number"]
    await quiet(receiver, url, 1)


async def test_status_changed_to(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await make_automation(hook["form_id"], url,
                          when=[{"event": "status_changed", "to": ["closed"]}])
    case = await new_case(api, hook["form_id"])
    await patch_case(api, case["id"], status="in_progress")
    await patch_case(api, case["id"], status="closed")
    [request] = await receiver.wait_for(url, 1)
    assert request.json()["caseNumber"] == case["case_number"]
    await quiet(receiver, url, 1)


# Seed: "If the same case triggers a new webhook, the data is sent again"; SPEC: `once`.

async def test_same_case_firing_again_sends_again_unless_once(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    every, once = receiver.endpoint(), receiver.endpoint()
    when = [{"event": "case_created"}, {"event": "case_changed"}]
    await make_automation(hook["form_id"], every, when=when)
    await make_automation(hook["form_id"], once, when=when, once=True)
    case = await new_case(api, hook["form_id"])
    for n in range(3):
        await patch_case(api, case["id"], data={"amount": n + 1})
    sent = await receiver.wait_for(every, 4)
    assert {r.json()["caseNumber"] for r in sent} == {case["case_number"]}
    assert len({r.headers["webhook-id"] for r in sent}) == 4  # four deliveries, four ids
    await receiver.wait_for(once, 1)
    await quiet(receiver, once, 1)


# Seed: "Försök 1, 2, 3"; SPEC 4: retries on 5xx/408/429/connection errors, other 4xx final,
# every attempt logged.

@pytest.mark.parametrize(("attempts", "failures", "state"), [
    (1, 1, "failed"), (2, 1, "succeeded"), (3, 2, "succeeded"), (3, 3, "failed"),
])
async def test_attempts_against_a_receiver_that_fails_n_times(
        attempts: int, failures: int, state: str, make_form: FormFactory,
        make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(*[Reply(status=503, body={"error": "busy"})] * failures, Reply())
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, attempts=attempts))
    case = await new_case(api, hook["form_id"])
    expected = min(attempts, failures + 1)
    sent = await receiver.wait_for(url, expected)
    assert len({r.headers["webhook-id"] for r in sent}) == 1  # stable across retries
    [logged] = await deliveries(api, 1, automation=automation["id"], case=case["id"])
    assert logged["state"] == state
    detail = await delivery(api, logged["id"])
    assert [a["response_status"] for a in detail["attempts"]] == \
        ([503] * failures + [200])[:expected]
    assert detail["attempts"][0]["response_body"] == '{"error":"busy"}'
    assert detail["attempts"][0]["request"]["body"] == sent[0].body.decode()
    await quiet(receiver, url, expected, settle=0.5)


async def test_a_final_4xx_is_not_retried(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=422, body={"error": "no"}))
    automation = await make_automation(hook["form_id"], url,
                                       action=webhook_action(url, attempts=3))
    await new_case(api, hook["form_id"])
    [logged] = await deliveries(api, 1, automation=automation["id"])
    assert logged["state"] == "failed"
    assert len((await delivery(api, logged["id"]))["attempts"]) == 1
    assert len(receiver.at(url)) == 1
    async with api.get("/api/deliveries", params={"automation": automation["id"],
                                                  "state": "succeeded"}) as resp:
        assert (await resp.json())["deliveries"] == []


# Seed: "Timeout (sek) 10, 30, 60"; a hanging receiver never holds up another.

async def test_timeout_against_a_hanging_receiver_does_not_block_others(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    hanging = receiver.endpoint(Reply(delay=25))
    healthy = receiver.endpoint()
    slow = await make_automation(hook["form_id"], hanging,
                                 action=webhook_action(hanging, timeout=10))
    await new_case(api, hook["form_id"])  # fires `slow`, which hangs for 10 s
    await receiver.wait_for(hanging, 1)
    await make_automation(hook["form_id"], healthy)
    started = asyncio.get_running_loop().time()
    other_form = await make_form()
    await make_automation(other_form["form_id"], healthy)
    await new_case(api, other_form["form_id"])
    await receiver.wait_for(healthy, 1, within=5)
    assert asyncio.get_running_loop().time() - started < 5  # not queued behind the hang
    [logged] = await deliveries(api, 1, within=20, automation=slow["id"])
    detail = await delivery(api, logged["id"])
    assert logged["state"] == "failed"
    assert "timeout" in detail["attempts"][0]["error"].lower()
    assert 9_000 <= detail["attempts"][0]["duration_ms"] < 20_000


# Seed: "Autentiseringstyp Basic, ingen"; SPEC: Standard Webhooks signature.

async def test_basic_auth_and_standard_webhooks_signature(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    automation = await make_automation(hook["form_id"], url, action=webhook_action(
        url, auth={"type": "basic", "username": "crm", "password": "s3cret"}))
    case = await new_case(api, hook["form_id"])
    [request] = await receiver.wait_for(url, 1)
    expected = "Basic " + base64.b64encode(b"crm:s3cret").decode()
    assert request.headers["Authorization"] == expected
    verified = Webhook(automation["secret"]).verify(request.body, request.headers)
    assert verified == {"caseNumber": case["case_number"], "text": "hello"}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(automation["secret"]).verify(request.body + b" ", request.headers)
    [logged] = await deliveries(api, 1, automation=automation["id"])
    recorded = (await delivery(api, logged["id"]))["attempts"][0]["request"]["headers"]
    assert "s3cret" not in str(recorded)
    assert base64.b64encode(b"crm:s3cret").decode() not in str(recorded)


# Seed: "HTTP method POST, GET, PUT" and "Protokolltyp JSON, JSON ARRAY, FORM" (the exact bytes
# per combination are in test_outgoing_sender.py; here the whole pipeline).

@pytest.mark.parametrize(("method", "protocol", "content_type", "expected"), [
    ("PUT", "json_array", "application/json", b'[{"caseNumber":1,"text":"hello"}]'),
    ("POST", "form", "application/x-www-form-urlencoded", b"caseNumber=1&text=hello"),
    ("GET", "json", None, b""),
])
async def test_method_and_protocol_through_the_pipeline(
        method: str, protocol: str, content_type: str | None, expected: bytes,
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint()
    await make_automation(hook["form_id"], url,
                          action=webhook_action(url, method=method, protocol=protocol))
    await new_case(api, hook["form_id"])
    [request] = await receiver.wait_for(url, 1)
    assert (request.method, request.body) == (method, expected)
    assert request.headers.get("Content-Type") == content_type
    if method == "GET":
        assert request.query == {"caseNumber": "1", "text": "hello"}


# Seed: "you can also define a possible response ... saved in the same case"; dotted keys.

async def test_response_data_is_written_back_into_the_case(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form(fields=RESPONSE_FORM_FIELDS)
    url = receiver.endpoint(Reply(body={"id": "CRM-42", "result": {"status": "open"},
                                        "ignored": 1}))
    automation = await make_automation(hook["form_id"], url, action=with_response(url))
    case = await new_case(api, hook["form_id"])
    await receiver.wait_for(url, 1)
    found = await case_when(api, case["id"], lambda c: "crm-status" in c["data"])
    assert found["data"] == {"text-field": "hello", "external-id": "CRM-42",
                             "crm-status": "open"}
    assert found["history"][-1]["author"] == f"Automation: {automation['name']}"


async def test_the_answers_case_update_carries_its_own_requests_correlation_id(
        make_form: FormFactory, make_automation: AutomationFactory, http: aiohttp.ClientSession,
        receiver: Receiver, events: EventTap) -> None:
    """Requests and reports travel many to a message; each answer's update is still traced to
    the incoming request that made its case, whether the dispatcher sent the first attempt
    itself or casestore's schedule handed it out (the endpoint's 4 slots are busy for a second
    when the rest arrive)."""
    hook = await make_form(fields=RESPONSE_FORM_FIELDS)
    url = receiver.endpoint(Reply(body={"id": "CRM-42", "result": {"status": "open"}},
                                  delay=1.0))
    await make_automation(hook["form_id"], url, action=with_response(url))

    async def post(trace: str) -> None:
        async with http.post(hook["url"], json={"text-field": "hello"},
                             headers={"X-Correlation-ID": trace}) as resp:
            assert resp.status == 200

    traces = {f"answer-trace-{n}" for n in range(8)}
    await asyncio.gather(*(post(t) for t in traces))
    updates = [await events.next(lambda e: e["type"] == "case.updated"
                                 and e["form_id"] == hook["form_id"]) for _ in traces]
    assert {u["correlation_id"] for u in updates} == traces


async def test_requests_of_cases_fired_together_travel_together_at_most_32_to_a_message(
        make_form: FormFactory, make_automation: AutomationFactory, http: aiohttp.ClientSession,
        receiver: Receiver, events: EventTap) -> None:
    """A broker message costs far more than its bytes: what the dispatcher requests while its
    previous request awaits its confirm goes out in one message."""
    hook = await make_form()
    url = receiver.endpoint(Reply())
    await make_automation(hook["form_id"], url)
    cases = 80

    async def post(n: int) -> None:
        async with http.post(hook["url"], json={"text-field": f"case {n}"}) as resp:
            assert resp.status == 200

    def ours(event: dict[str, Any]) -> int:
        if event["type"] != "delivery.requested":
            return 0
        return sum(r["form_id"] == hook["form_id"] for r in event["data"]["requests"])

    await asyncio.gather(*(post(n) for n in range(cases)))
    sizes: list[int] = []
    while sum(sizes) < cases:
        sizes.append(ours(await events.next(lambda e: ours(e) > 0, within=30)))
    assert max(sizes) <= BUNDLE_LIMIT == 32
    assert len(sizes) < cases, sizes  # some requests travelled together
    await receiver.wait_for(url, cases)


async def test_a_first_attempt_answered_at_once_goes_to_casestore_with_its_request(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver, events: EventTap, stack: Stack) -> None:
    """An endpoint known to answer at once: the dispatcher sends the first attempt before it
    requests the delivery, and the request carries the attempt's report, one message where
    there were two. casestore settles it all in one go: delivery, attempt, response data.
    (A dispatcher waiting longer than by default: "at once" must hold on a busy machine.)"""
    hook = await make_form(fields=RESPONSE_FORM_FIELDS)
    url = receiver.endpoint(Reply(body={"id": "CRM-42", "result": {"status": "open"}}))
    await make_automation(hook["form_id"], url, action=with_response(url))
    async with replaced(stack, "dispatcher", report_wait_seconds=4.0) as other:
        await new_case(api, hook["form_id"])
        await receiver.wait_for(url, 1)  # from now on the dispatcher knows the endpoint is quick
        await handed_over_with_its_report(api, events, other, hook)


async def handed_over_with_its_report(api: aiohttp.ClientSession, events: EventTap,
                                      stack: Stack, hook: dict[str, Any]) -> None:
    counted = "casewire_first_attempts_reported_with_request_total"
    before = value(await scrape(stack.url("dispatcher")), counted)
    case = await new_case(api, hook["form_id"])

    def requests_of_case(event: dict[str, Any]) -> list[dict[str, Any]]:
        if event["type"] != "delivery.requested":
            return []
        return [r for r in event["data"]["requests"] if r["case"]["case_id"] == case["id"]]

    [request] = requests_of_case(await events.next(lambda e: bool(requests_of_case(e))))
    assert request["report"]["verdict"] == "succeeded"
    assert request["report"]["attempt"]["number"] == 1
    found = await case_when(api, case["id"], lambda c: "crm-status" in c["data"])
    assert found["data"] == {"text-field": "hello", "external-id": "CRM-42",
                             "crm-status": "open"}
    await reaches(stack.url("dispatcher"), counted, lambda shown: shown >= before + 1)
    settled = await delivery(api, request["delivery_id"])
    assert settled["state"] == "succeeded"
    assert [(a["number"], a["response_status"]) for a in settled["attempts"]] == [(1, 200)]
    with pytest.raises(AssertionError, match="no matching event"):  # no report of its own
        await events.next(lambda e: e["type"] == "delivery.attempted" and any(
            r["delivery_id"] == request["delivery_id"] for r in e["data"]["reports"]),
            within=1.0)


async def test_a_non_json_answer_writes_nothing(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form(fields=RESPONSE_FORM_FIELDS)
    url = receiver.endpoint(Reply(body=b"id=CRM-42"))
    automation = await make_automation(hook["form_id"], url, action=with_response(url))
    case = await new_case(api, hook["form_id"])
    [logged] = await deliveries(api, 1, automation=automation["id"])
    assert logged["state"] == "succeeded"
    await asyncio.sleep(0.5)
    assert (await get_case(api, case["id"]))["data"] == {"text-field": "hello"}


# Seed: "This 'returnDataURL' is valid for 2 hours."

async def test_return_data_url_accepts_an_answer_later_and_refuses_tampering(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, http: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form(fields=RESPONSE_FORM_FIELDS)
    url = receiver.endpoint(Reply(status=202, body={}))
    await make_automation(hook["form_id"], url, action=with_response(url))
    case = await new_case(api, hook["form_id"])
    [request] = await receiver.wait_for(url, 1)
    return_url = request.json()["returnDataURL"]
    assert return_url.startswith(settings.public_base_url + "/return/")
    async with http.post(return_url.replace("signature=", "signature=0"),
                         json={"id": "X"}) as resp:
        assert resp.status == 403
    async with http.post(return_url, json={"id": "LATER-1", "result": {"status": "done"}}) as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {}
    found = await case_when(api, case["id"], lambda c: "crm-status" in c["data"])
    assert (found["data"]["external-id"], found["data"]["crm-status"]) == ("LATER-1", "done")


async def test_return_data_url_expires_after_two_hours(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, http: aiohttp.ClientSession, receiver: Receiver) -> None:
    from shared.signing import UrlSigner

    hook = await make_form(fields=RESPONSE_FORM_FIELDS)
    url = receiver.endpoint(Reply(status=202, body={}))
    await make_automation(hook["form_id"], url, action=with_response(url))
    await new_case(api, hook["form_id"])
    [request] = await receiver.wait_for(url, 1)
    path = request.json()["returnDataURL"].removeprefix(settings.public_base_url).split("?")[0]
    signer = UrlSigner(settings.signing_key)
    issued = float(request.headers["webhook-timestamp"])
    # The URL the receiver got carries an expiry two hours after the send...
    assert signer.check("POST", path, str(int(issued + 7200)),
                        request.json()["returnDataURL"].split("signature=")[1]) is None
    # ...and one signed correctly but past its expiry is refused as gone.
    expired = signer.sign("POST", path, -1)
    async with http.post(settings.public_base_url + expired, json={"id": "late"}) as resp:
        assert resp.status == 410
        assert (await resp.json())["errors"][0]["code"] == "expired"


# SPEC 4: "A case update that comes from response data never re-fires the automation that
# produced it, and no chain of automations may loop forever."

async def test_response_data_never_refires_its_own_automation(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form(fields=RESPONSE_FORM_FIELDS)
    url = receiver.endpoint(Reply(body={"id": "A", "result": {"status": "s"}}))
    await make_automation(hook["form_id"], url, action=with_response(url),
                          when=[{"event": "case_created"}, {"event": "case_changed"}])
    case = await new_case(api, hook["form_id"])
    await case_when(api, case["id"], lambda c: "crm-status" in c["data"])
    await quiet(receiver, url, 1)


async def test_a_ping_pong_of_two_automations_is_bounded(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form(fields=RESPONSE_FORM_FIELDS)
    counter = iter(range(1000))

    ping = receiver.endpoint(*[Reply(body={"id": f"p{next(counter)}"}) for _ in range(20)])
    pong = receiver.endpoint(*[Reply(body={"id": f"q{next(counter)}"}) for _ in range(20)])
    for url, watched, written in ((ping, "crm-status", "external-id"),
                                  (pong, "external-id", "crm-status")):
        action = webhook_action(url)
        action["response"] = [{"field": written, "key": "id"}]
        await make_automation(hook["form_id"], url, action=action,
                              when=[{"event": "field_changed", "fields": [watched]}])
    case = await new_case(api, hook["form_id"])
    limit = settings.automation_max_depth
    with structlog.testing.capture_logs() as logs:
        await patch_case(api, case["id"], data={"crm-status": "start"})  # depth 0: ping fires
        total = limit + 1  # depths 0..limit fire; the change at depth limit + 1 fires nothing
        await asyncio.sleep(2)
    assert len(receiver.at(ping)) + len(receiver.at(pong)) == total
    assert [e["depth"] for e in logs if e["event"] == "automation_chain_bounded"
            and e["case_id"] == case["id"]] == [limit + 1]
    await quiet(receiver, ping, len(receiver.at(ping)))


# SPEC 4: "a failed delivery can be replayed"; webhook-id stays the same.

async def test_replay_sends_again_with_the_same_webhook_id(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form()
    url = receiver.endpoint(Reply(status=500), Reply())
    automation = await make_automation(hook["form_id"], url)
    await new_case(api, hook["form_id"])
    [failed] = await deliveries(api, 1, automation=automation["id"], state="failed")
    async with api.post(f"/api/deliveries/{failed['id']}/replay") as resp:
        assert resp.status == 202, await resp.text()
    first, again = await receiver.wait_for(url, 2)
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    [done] = await deliveries(api, 1, automation=automation["id"], state="succeeded")
    assert done["id"] == failed["id"]
    assert [a["response_status"] for a in (await delivery(api, done["id"]))["attempts"]] == \
        [500, 200]


# SPEC 4 / NOTES: SSRF protection after DNS resolution.

@pytest.mark.parametrize("target", ["http://10.1.2.3/hook", "http://169.254.169.254/latest",
                                    "http://[::1]:9/hook", "http://192.168.0.1/"])
async def test_private_targets_are_refused(
        target: str, settings: Settings, make_form: FormFactory,
        make_automation: AutomationFactory, api: aiohttp.ClientSession) -> None:
    """Refused when saved; a row stored before that check existed is refused at every send."""
    hook = await make_form()
    action = webhook_action(target, attempts=3)
    body = {"name": "internal", "when": [{"event": "case_created"}], "action": action}
    async with api.post(f"/api/forms/{hook['form_id']}/automations", json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"][0]["field"] == "action.settings.url"
    automation = await make_automation(hook["form_id"], "http://127.0.0.1:9/",
                                       action=webhook_action("http://127.0.0.1:9/", attempts=3))
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "UPDATE automations SET definition = jsonb_set(definition,"
            " '{action,settings,url}', to_jsonb($2::text)) WHERE id = $1",
            uuid.UUID(automation["id"]), target)
    finally:
        await conn.close()
    await new_case(api, hook["form_id"])
    [logged] = await deliveries(api, 1, automation=automation["id"])
    attempts = (await delivery(api, logged["id"]))["attempts"]
    assert (logged["state"], len(attempts)) == ("failed", 1)
    assert attempts[0]["request"]["url"].startswith(target.rstrip("/"))
    assert "refused" in attempts[0]["error"]


# SPEC 6: automations test-send.

async def test_test_send_returns_the_receivers_answer_and_writes_nothing(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        receiver: Receiver) -> None:
    hook = await make_form(fields=RESPONSE_FORM_FIELDS)
    url = receiver.endpoint(Reply(status=201, body={"id": "T-1", "result": {"status": "x"}}))
    automation = await make_automation(hook["form_id"], url, action=with_response(url),
                                       when=[{"event": "status_changed"}])
    case = await new_case(api, hook["form_id"])
    async with api.post(f"/api/automations/{automation['id']}/test",
                        json={"case_id": case["id"]}) as resp:
        assert resp.status == 200, await resp.text()
        result = await resp.json()
    assert (result["succeeded"], result["status"]) == (True, 201)
    assert '"T-1"' in result["body"]
    [request] = receiver.at(url)
    assert request.json()["caseNumber"] == case["case_number"]
    async with api.post(f"/api/automations/{automation['id']}/test", json={}) as resp:
        assert (await resp.json())["status"] == 201  # a sample case
    await asyncio.sleep(0.5)
    assert (await get_case(api, case["id"]))["data"] == {"text-field": "hello"}
    async with api.get("/api/deliveries", params={"automation": automation["id"]}) as resp:
        assert (await resp.json())["deliveries"] == []


# Seed: "images or files ... will be delivered as a URL. This URL is only valid for 24 hours".

async def test_files_are_sent_as_urls_valid_for_24_hours(
        settings: Settings, make_form: FormFactory, make_automation: AutomationFactory,
        api: aiohttp.ClientSession, http: aiohttp.ClientSession, receiver: Receiver) -> None:
    from shared.signing import UrlSigner, file_path

    hook = await make_form()
    url = receiver.endpoint()
    action = webhook_action(url)
    action["content"] = [{"key": "files", "field": "attachment"}]
    await make_automation(hook["form_id"], url, action=action,
                          when=[{"event": "field_filled", "fields": ["attachment"]}])
    case = await new_case(api, hook["form_id"])
    async with api.post(f"/api/cases/{case['id']}/files/attachment", params={"name": "r.txt"},
                        data=b"quarterly report", headers={"Content-Type": "text/plain"}) as resp:
        assert resp.status == 201, await resp.text()
        file_id = (await resp.json())["id"]
    [request] = await receiver.wait_for(url, 1)
    [file_url] = request.json()["files"]
    assert file_url.startswith(f"{settings.casestore_url}/files/{file_id}?")
    expires = int(file_url.split("expires=")[1].split("&")[0])
    sent_at = int(request.headers["webhook-timestamp"])
    assert sent_at + 24 * 3600 - 5 <= expires <= sent_at + 24 * 3600 + 5
    async with http.get(file_url) as resp:  # no admin token: the signature is the key
        assert resp.status == 200
        assert await resp.read() == b"quarterly report"
        assert resp.headers["Content-Type"].startswith("text/plain")
    async with http.get(file_url.replace(f"/files/{file_id}", f"/files/{case['id']}")) as resp:
        assert resp.status in (403, 404)
    async with http.get(file_url[:-1] + ("0" if file_url[-1] != "0" else "1")) as resp:
        assert resp.status == 403
    expired = UrlSigner(settings.signing_key).sign("GET", file_path(file_id), -1)
    async with http.get(settings.casestore_url + expired) as resp:
        assert resp.status == 403
        assert (await resp.json())["errors"][0]["code"] == "expired"
