"""Files: upload through the admin API into a file field, public download by signed URL."""

import asyncio
import time
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import pytest

from shared.settings import Settings
from shared.signing import UrlSigner
from tests.helpers import PNG, EventTap, call, case_with_form, upload
from tests.stack import Stack

TRICKY_NAME = 'Kvitto å "1".png'  # non-ASCII and quotes: both need care in the header
def signed(settings: Settings, file_id: str, ttl: float = 60, now: float | None = None) -> str:
    path = UrlSigner(settings.signing_key).sign("GET", f"/files/{file_id}", ttl, now=now)
    return settings.casestore_url + path


# Upload

async def test_upload_appends_the_file_to_the_field_through_a_case_update(
        api: aiohttp.ClientSession, events: EventTap) -> None:
    case = await case_with_form(api)
    first = await upload(api, case["id"])
    entry = {"id": first["id"], "name": "photo.png", "content_type": "image/png",
             "size": len(PNG)}
    assert {k: first[k] for k in entry} == entry
    assert first["case"]["data"]["attachment"] == [entry]
    assert first["case"]["version"] == 2
    second = await upload(api, case["id"], b"hello", name="notes.txt",
                          content_type="text/plain; charset=utf-8")
    stored = await call(api, "GET", f"/api/cases/{case['id']}", 200)
    assert [f["name"] for f in stored["data"]["attachment"]] == ["photo.png", "notes.txt"]
    assert stored["data"]["attachment"][1] == {
        "id": second["id"], "name": "notes.txt", "content_type": "text/plain; charset=utf-8",
        "size": 5}
    assert stored["data"]["text-field"] == case["data"]["text-field"]
    assert [h["author"] for h in stored["history"]] == ["Admin API"] * 3
    updated = await events.next(lambda e: e["type"] == "case.updated"
                                and e["case_id"] == case["id"])
    assert updated["data"]["changes"] == [{"field": "attachment", "old": None, "new": [entry]}]


async def test_parallel_uploads_to_one_field_all_land(api: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    uploads = await asyncio.gather(*(upload(api, case["id"], f"file {n}".encode(),
                                            name=f"f{n}.txt") for n in range(8)))
    stored = await call(api, "GET", f"/api/cases/{case['id']}", 200)
    assert sorted(f["id"] for f in stored["data"]["attachment"]) == \
        sorted(u["id"] for u in uploads)
    assert stored["version"] == 9


async def test_an_empty_file_and_no_content_type_are_accepted(
        api: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    uploaded = await upload(api, case["id"], b"", content_type=None, name="empty")
    assert (uploaded["size"], uploaded["content_type"]) == (0, "application/octet-stream")


@pytest.mark.parametrize(("field", "code"), [("text-field", "wrong_type"),
                                             ("notes", "wrong_type"),
                                             ("no-such-field", "unknown_field")])
async def test_upload_to_a_field_that_is_not_a_file_field_is_400(
        field: str, code: str, api: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    errors = (await upload(api, case["id"], field=field, status=400))["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [(field, code)]
    assert (await call(api, "GET", f"/api/cases/{case['id']}", 200))["version"] == 1


@pytest.mark.parametrize(("name", "message"), [
    ("", "give the file name"), ("a/b.png", "not a path"), ("..", "not a path"),
    ("bad\nname", "control characters"), ("x" * 256, "at most 255")])
async def test_bad_file_names_are_400(name: str, message: str,
                                      api: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    errors = (await upload(api, case["id"], name=name, status=400))["errors"]
    assert errors[0]["field"] == "name"
    assert message in errors[0]["message"]


async def test_missing_name_and_bad_content_type_are_400(api: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    body = await call(api, "POST", f"/api/cases/{case['id']}/files/attachment", 400, data=b"x",
                      headers={"Content-Type": "image/png"})
    assert body["errors"][0]["field"] == "name"
    errors = (await upload(api, case["id"], content_type="nonsense", status=400))["errors"]
    assert errors[0]["field"] == "Content-Type"


@pytest.mark.parametrize("case_id", [str(uuid.uuid4()), "nope"])
async def test_upload_to_an_unknown_case_is_404(case_id: str,
                                                api: aiohttp.ClientSession) -> None:
    assert (await upload(api, case_id, status=404))["errors"][0]["code"] == "not_found"


async def test_a_file_above_the_body_limit_is_413(api: aiohttp.ClientSession,
                                                  settings: Settings) -> None:
    case = await case_with_form(api)
    body = await upload(api, case["id"], b"x" * (settings.max_body_bytes + 1), status=413)
    assert body["errors"][0]["code"] == "too_large"

    async def chunks() -> Any:
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"y" * 65536

    async with api.post(f"/api/cases/{case['id']}/files/attachment", params={"name": "big"},
                        data=chunks()) as resp:  # chunked: no Content-Length up front
        assert resp.status == 413
    assert (await call(api, "GET", f"/api/cases/{case['id']}", 200))["version"] == 1


async def test_upload_needs_the_bearer_token(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.post(stack.url("casestore") + f"/api/cases/{uuid.uuid4()}/files/attachment",
                         params={"name": "x"}, data=b"x") as resp:
        assert resp.status == 401


# Download

async def test_the_signed_url_downloads_the_bytes_without_a_token(
        api: aiohttp.ClientSession, http: aiohttp.ClientSession, settings: Settings) -> None:
    case = await case_with_form(api)
    uploaded = await upload(api, case["id"], name=TRICKY_NAME)
    assert uploaded["url"].startswith(f"{settings.casestore_url}/files/{uploaded['id']}?")
    async with http.get(uploaded["url"]) as resp:
        assert resp.status == 200
        assert await resp.read() == PNG
        assert resp.headers["Content-Type"] == "image/png"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Security-Policy"] == "sandbox"
        disposition = resp.headers["Content-Disposition"]
    assert disposition == ("attachment; filename=\"Kvitto _ _1_.png\"; "
                           f"filename*=UTF-8''{quote(TRICKY_NAME, safe='')}")


async def test_file_info_gives_a_fresh_signed_url(
        api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    uploaded = await upload(api, case["id"])
    info = await call(api, "GET", f"/api/files/{uploaded['id']}", 200)
    assert {k: info[k] for k in ("id", "name", "size", "case_id", "field_id")} == {
        "id": uploaded["id"], "name": "photo.png", "size": len(PNG), "case_id": case["id"],
        "field_id": "attachment"}
    async with http.get(info["url"]) as resp:
        assert (resp.status, await resp.read()) == (200, PNG)
    await call(api, "GET", f"/api/files/{uuid.uuid4()}", 404)


async def test_expired_url_is_403_expired(api: aiohttp.ClientSession,
                                          http: aiohttp.ClientSession,
                                          settings: Settings) -> None:
    case = await case_with_form(api)
    uploaded = await upload(api, case["id"])
    url = signed(settings, uploaded["id"], ttl=1, now=time.time() - 60)
    async with http.get(url) as resp:
        assert resp.status == 403
        assert (await resp.json())["errors"][0]["code"] == "expired"
    async with http.get(signed(settings, uploaded["id"], ttl=60)) as resp:
        assert resp.status == 200


def _tampered(url: str, file_id: str, other_id: str) -> list[str]:
    base, query = url.split("?")
    expires, signature = (part.split("=")[1] for part in query.split("&"))
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    return [
        base,  # no signature at all
        f"{base}?expires={expires}",
        f"{base}?expires={expires}&signature={flipped}",
        f"{base}?expires={int(expires) + 3600}&signature={signature}",  # lifetime extended
        f"{base}?expires=abc&signature={signature}",
        url.replace(file_id, other_id),  # moved to another file
    ]


async def test_tampered_or_missing_signature_is_403(
        api: aiohttp.ClientSession, http: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    mine, other = await upload(api, case["id"]), await upload(api, case["id"], b"other")
    for url in _tampered(mine["url"], mine["id"], other["id"]):
        async with http.get(url) as resp:
            assert resp.status == 403, url
            body = await resp.json()
            assert body["errors"][0]["code"] == "forbidden"
            assert PNG not in await resp.read()


@pytest.mark.parametrize("file_id", [str(uuid.uuid4()), "not-a-uuid"])
async def test_a_valid_signature_for_an_unknown_file_is_404(
        file_id: str, http: aiohttp.ClientSession, settings: Settings, stack: Stack) -> None:
    async with http.get(signed(settings, file_id)) as resp:
        assert resp.status == 404


async def test_files_of_a_deleted_case_are_gone(api: aiohttp.ClientSession,
                                                http: aiohttp.ClientSession) -> None:
    case = await case_with_form(api)
    uploaded = await upload(api, case["id"])
    await call(api, "DELETE", f"/api/cases/{case['id']}", 200)
    async with http.get(uploaded["url"]) as resp:
        assert resp.status == 404
    assert urlsplit(uploaded["url"]).path == f"/files/{uploaded['id']}"
