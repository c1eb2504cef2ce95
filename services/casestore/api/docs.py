"""The OpenAPI description (`/api/openapi.json`) and Swagger UI to browse it (`/api/docs`).

The document is built once, at start-up, from the routes casestore serves and ingest's public
routes (shared/ingest_contract.py, with ingest's public URL as their server), each described by
its `@operation`. Neither needs the admin token: the description holds no secret, and the page
asks for the token to try requests. Swagger UI's files come from the `swagger-ui-bundle-v2`
package, never a CDN.
"""

from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from shared import ingest_contract, payloads
from shared.openapi import Served, describe
from shared.settings import Settings

routes = web.RouteTableDef()
OPENAPI = web.AppKey("openapi", bytes)
PUBLIC_PATHS = ("/api/openapi.json", "/api/docs")
ASSETS = "/api/docs/assets"
DESCRIPTION = ("Casewire's admin API (casestore, bearer token CASEWIRE_ADMIN_TOKEN), its "
               "public incoming-webhook endpoints (ingest, at CASEWIRE_PUBLIC_BASE_URL) and, "
               "under webhooks, what its outgoing webhooks send receivers.")
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Casewire API</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/start.js"></script>
</body></html>
"""
# A file of its own, not inline: the page's CSP allows scripts from this origin only.
START = 'window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui"});\n'
DOCS_HEADERS = web.AppKey("docs_headers", dict[str, str])


def docs_headers(settings: Settings) -> dict[str, str]:
    """What the page where admins paste the bearer token is sent with: no framing (no
    clickjacking of the token field), no sniffing, scripts from this origin only, and
    requests only to casestore and ingest (whose webhooks the page can try)."""
    ingest = urlsplit(settings.public_base_url)
    return {"Content-Security-Policy": "default-src 'none'; script-src 'self'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
            f"connect-src 'self' {ingest.scheme}://{ingest.netloc}; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'none'",
            "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}


async def docs_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """For `on_response_prepare`: every answer under /api/docs (page, script, assets)."""
    if request.path == PUBLIC_PATHS[1] or request.path.startswith(PUBLIC_PATHS[1] + "/"):
        response.headers.update(request.app[DOCS_HEADERS])


def _version() -> str:
    try:
        return version("casewire")
    except PackageNotFoundError:
        return "dev"


def served(app: web.Application, settings: Settings) -> list[Served]:
    """casestore's own routes, and ingest's at its public URL."""
    own = [Served(r.method, r.resource.canonical, r.handler) for r in app.router.routes()
           if r.resource is not None and not r.resource.canonical.startswith(ASSETS)]
    return [*own, *ingest_contract.served(settings.public_base_url.rstrip("/"))]


def add_docs(app: web.Application, settings: Settings) -> None:
    """Mount the description and the page; call after every other route is added."""
    app.router.add_routes(routes)
    app.router.add_static(ASSETS, swagger_ui_path, append_version=True)
    app[DOCS_HEADERS] = docs_headers(settings)
    app.on_response_prepare.append(docs_security_headers)
    document = describe(served(app, settings), title="Casewire", version=_version(),
                        description=DESCRIPTION, webhooks=payloads.generic_webhooks(),
                        schemas={"CaseMetadata": payloads.metadata_component()})
    app[OPENAPI] = orjson.dumps(document)


@routes.get("/api/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


@routes.get("/api/docs")
async def docs_page(_: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


@routes.get("/api/docs/start.js")
async def docs_start(_: web.Request) -> web.Response:
    return web.Response(text=START, content_type="text/javascript")
