"""File upload under /api (admin token) and the signed public download under /files."""

import re

from aiohttp import hdrs, web

from services.casestore.api.answers import FileInfo, Uploaded
from services.casestore.api.cases import ADMIN_AUTHOR
from services.casestore.errors import found
from services.casestore.files import attach_file, check_name, content_disposition
from services.casestore.params import invalid, path_uuid
from services.casestore.repo import files as file_rows
from shared.bodies import read_body
from shared.openapi import Param, errors, operation
from shared.service import POOL, SETTINGS
from shared.signing import UrlSigner, file_path, file_url
from shared.web import Forbidden, TooLarge, json_response

routes = web.RouteTableDef()
NO_FILE = "no file has that id"
BY_ID = {"file_id": {"format": "uuid"}}
DEFAULT_TYPE = "application/octet-stream"
MEDIA_TYPE = re.compile(r"^[\x21-\x7e]+/[\x21-\x7e]+( *;[\x20-\x7e]*)?$")


def _content_type(request: web.Request) -> str:
    value = request.headers.get(hdrs.CONTENT_TYPE, "").strip() or DEFAULT_TYPE
    if len(value) > 255 or not MEDIA_TYPE.match(value):
        raise invalid("Content-Type", "expected a media type such as image/png")
    return value


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"the file is larger than {limit} bytes")


@routes.post("/api/cases/{case_id}/files/{field_id}")
@operation("Upload a file into a file field of the case (the body is the file)",
           tags=("files",), responses={201: Uploaded},
           raw_body={"*/*": {"type": "string", "format": "binary"}},
           params=(Param("name", {"type": "string"}, "the file's name"),),
           path_schemas={"case_id": {"format": "uuid"}})
async def upload(request: web.Request) -> web.Response:
    """The raw file is the body, its type the Content-Type header, its name `?name=`."""
    case_id = path_uuid(request, "case_id", "case")
    name = check_name(request.query.get("name"))
    content_type = _content_type(request)
    limit = request.app[SETTINGS].max_body_bytes
    if (request.content_length or 0) > limit:
        raise _too_large(limit)
    try:
        # The app's client_max_size stops chunked bodies too; the body timeout slow ones.
        content = await read_body(request)
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(limit) from exc
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row, case = await attach_file(conn, case_id, request.match_info["field_id"], name,
                                      content_type, content, author=ADMIN_AUTHOR)
    return json_response({**row.case_entry(), "url": file_url(request.app[SETTINGS], str(row.id)),
                          "case": case.to_api()}, status=201)


@routes.get("/api/files/{file_id}")
@operation("A stored file and a fresh signed download URL", tags=("files",),
           responses={200: FileInfo}, path_schemas=BY_ID)
async def file_info(request: web.Request) -> web.Response:
    """What is stored, and a fresh signed download URL."""
    async with request.app[POOL].acquire() as conn:
        row = found(await file_rows.get_file(conn, path_uuid(request, "file_id", "file")), NO_FILE)
    return json_response(row.to_api(file_url(request.app[SETTINGS], str(row.id))))


@routes.get("/files/{file_id}")
@operation("Download a file (the signed URL is the credential)", tags=("files",),
           public=True, path_schemas=BY_ID, params=(
               Param("expires", {"type": "string"}, "Unix time", required=True),
               Param("signature", {"type": "string"}, required=True)),
           responses={200: {"content": {"*/*": {"schema": {"type": "string",
                                                               "format": "binary"}}}},
                      **errors(403)})
async def download(request: web.Request) -> web.Response:
    """Public: the signature in the URL is the credential (receivers get these URLs)."""
    raw_id = request.match_info["file_id"]
    problem = UrlSigner(request.app[SETTINGS].signing_key).check(
        "GET", file_path(raw_id), request.query.get("expires"), request.query.get("signature"))
    if problem == "expired":
        raise Forbidden("this file URL has expired", code="expired")
    if problem is not None:
        raise Forbidden("missing or invalid signature")
    async with request.app[POOL].acquire() as conn:
        row = found(await file_rows.get_file_with_content(
            conn, path_uuid(request, "file_id", "file")), NO_FILE)
    return web.Response(body=row.content, headers={
        hdrs.CONTENT_TYPE: row.content_type,
        hdrs.CONTENT_DISPOSITION: content_disposition(row.name),
        # Stored types are whatever the uploader said: never let a browser render or sniff them,
        # and should one render it all the same (an HTML file opened in a tab), it runs as a
        # sandboxed page of no origin: no script, no cookies, no form.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        hdrs.CACHE_CONTROL: "private, no-store",
    })
