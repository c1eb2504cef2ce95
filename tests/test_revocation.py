"""What was taken away stops working: a file removed from its case, and test sends' return URLs."""

from typing import Any

import aiohttp

from tests.test_admin_api import call
from tests.test_files import case_with_form, upload


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
