"""What was taken away stops working: a file removed from its case, and test sends' return URLs."""

import asyncio
from typing import Any

import aiohttp

from tests.helpers import (
    RESPONSE_FORM_FIELDS,
    AutomationFactory,
    FormFactory,
    call,
    case_when,
    case_with_form,
    get_case,
    new_case,
    patch_case,
    upload,
    with_response,
)
from tests.receiver import Receiver, Reply


async def download_status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as resp:
        return resp.status


async def patch(api: aiohttp.ClientSession, case_id: str, data: dict[str, Any],
                status: int = 200) -> Any:
    return await call(api, "PATCH", f"/api/cases/{case_id}", status, {"data": data})


# Files

async def test_a_file_set_to_null_in_its_case_is_no_longer_downloadable(
        api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    uploaded = await upload(api, case["id"])
    assert await download_status(http, uploaded["url"]) == 200
    updated = await patch(api, case["id"], {"attachment": None})
    assert "attachment" not in updated["data"]
    assert await download_status(http, uploaded["url"]) == 404
    await call(api, "GET", f"/api/files/{uploaded['id']}", 404)


async def test_a_list_without_the_file_removes_only_that_file(
        api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    first = await upload(api, case["id"], b"one", name="one.txt")
    second = await upload(api, case["id"], b"two", name="two.txt")
    updated = await patch(api, case["id"], {"attachment": [second["case"]["data"]
                                                           ["attachment"][1]]})
    assert [f["id"] for f in updated["data"]["attachment"]] == [second["id"]]
    assert await download_status(http, first["url"]) == 404
    await call(api, "GET", f"/api/files/{first['id']}", 404)
    assert await download_status(http, second["url"]) == 200
    # Ids alone work too; an empty list empties the field.
    await patch(api, case["id"], {"attachment": [second["id"]]})
    await patch(api, case["id"], {"attachment": []})
    assert await download_status(http, second["url"]) == 404


async def test_a_file_list_naming_files_the_case_does_not_hold_is_400(
        api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    other = await case_with_form(api)
    mine = await upload(api, case["id"])
    theirs = await upload(api, other["id"])
    for value in ([theirs["id"]], [{"id": "made-up", "name": "x"}], ["x", mine["id"]], "x"):
        errors = (await patch(api, case["id"], {"attachment": value}, 400))["errors"]
        assert [e["field"] for e in errors] == ["attachment"]
    assert await download_status(http, mine["url"]) == 200
    assert await download_status(http, theirs["url"]) == 200


async def test_changing_other_fields_keeps_the_files(
        api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    uploaded = await upload(api, case["id"])
    await patch(api, case["id"], {"text-field": "changed"})
    assert await download_status(http, uploaded["url"]) == 200


# Test sends: the receiver's answer to a test must never land in a real case.

async def test_an_answer_to_a_test_sends_return_url_does_not_change_the_case(
        make_form: FormFactory, make_automation: AutomationFactory, api: aiohttp.ClientSession,
        http: aiohttp.ClientSession, receiver: Receiver) -> None:
    hook = await make_form(fields=RESPONSE_FORM_FIELDS)
    url = receiver.endpoint(Reply(status=202, body={}))
    await make_automation(hook["form_id"], url, action=with_response(url),
                          when=[{"event": "status_changed"}])
    automation = (await call(api, "GET", f"/api/forms/{hook['form_id']}/automations",
                             200))["automations"][0]
    case = await new_case(api, hook["form_id"])
    result = await call(api, "POST", f"/api/automations/{automation['id']}/test", 200,
                        {"case_id": case["id"]})
    assert result["succeeded"]
    [tested] = await receiver.wait_for(url, 1)
    assert tested.json()["caseNumber"] == case["case_number"]  # the real case's content
    test_return_url = tested.json()["returnDataURL"]
    assert case["id"] not in test_return_url
    async with http.post(test_return_url, json={"id": "FROM-TEST"}) as resp:
        assert resp.status == 200, await resp.text()
    # A real send afterwards: once its answer is written, the test's would have been too.
    await patch_case(api, case["id"], status="in_progress")
    real = (await receiver.wait_for(url, 2))[1].json()["returnDataURL"]
    async with http.post(real, json={"id": "FROM-REAL"}) as resp:
        assert resp.status == 200, await resp.text()
    found = await case_when(api, case["id"], lambda c: "external-id" in c["data"])
    await asyncio.sleep(0.5)
    found = await get_case(api, case["id"])
    assert found["data"]["external-id"] == "FROM-REAL"
    assert "FROM-TEST" not in str(found["history"])
