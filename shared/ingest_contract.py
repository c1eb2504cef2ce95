"""ingest's public routes as a contract: their paths, bodies, parameters and answers.

ingest serves each route on the paths given here (`serving`); casestore's OpenAPI description
lists them at ingest's public URL (`served`) without importing ingest. The description is
looked up by handler (shared.openapi.OPERATIONS), so each route's operation is declared on a
stand-in that names it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, RootModel

from shared.openapi import Empty, Param, Served, errors, operation

H = TypeVar("H", bound=Callable[..., Any])

TAGS = ("incoming webhook",)
HOOK_PATH = "/hooks/{token}"
HOOK_OPTIONS_PATH = "/hooks/{token}/{options:.+}"
RETURN_PATH = r"/return/{automation_id}/{case_id}/{delivery_id}/{depth:\d+}"
HOOK_PATHS = tuple(f"/hooks/{{token}}{suffix}" for suffix in (
    "", "/skipvalidate", "/skiptriggers", "/skipvalidate/skiptriggers",
    "/skiptriggers/skipvalidate"))
HOOK_HEADERS = (
    Param("Idempotency-Key", {"type": "string"}, "1-255 printable ASCII characters: requests "
          "with the same key create one case", where="header"),
    Param("Auth-key", {"type": "string"}, "on a webhook with user authentication",
          where="header"))
UUID = {"format": "uuid"}


class CaseValues(RootModel[dict[str, Any]]):
    """Field id to value; only fields of the form's first section."""


class HookCredentials(BaseModel):
    """A user's username and password, and nothing else."""

    username: str
    password: str


class Answer(RootModel[dict[str, Any]]):
    """The automation's response keys (dotted paths) to values."""


@operation("Create a case in the webhook's form (or, with only username and password on a "
           "webhook with user authentication, get an auth key)", body=CaseValues,
           public=True, tags=TAGS, paths=HOOK_PATHS, params=HOOK_HEADERS,
           responses={200: Empty, **errors(401, 422, 429, 503)})
def create_case() -> None:
    """Stands for ingest's handler of POST /hooks/{token}[/options]."""


@operation("Revoke every auth key of the user whose credentials are the body",
           body=HookCredentials, public=True, tags=TAGS,
           responses={200: Empty, **errors(401, 429, 503)})
def revoke_auth_keys() -> None:
    """Stands for ingest's handler of DELETE /hooks/{token}."""


@operation("A receiver's answer to a returnDataURL: response keys to values", body=Answer,
           public=True, tags=TAGS, responses={200: Empty, **errors(403, 410, 503)},
           params=(Param("expires", {"type": "string"}, "Unix time", required=True),
                   Param("signature", {"type": "string"}, required=True)),
           path_schemas={"automation_id": UUID, "case_id": UUID, "delivery_id": UUID,
                         "depth": {"pattern": "^[0-9]+$"}})
def return_data() -> None:
    """Stands for ingest's handler of POST /return/..."""


@dataclass(frozen=True)
class Route:
    """A route as ingest's router matches it, and the stand-in its operation is declared on."""

    method: str
    path: str
    declared: Callable[[], None]


ROUTES = (Route("POST", HOOK_OPTIONS_PATH, create_case), Route("POST", HOOK_PATH, create_case),
          Route("DELETE", HOOK_PATH, revoke_auth_keys), Route("POST", RETURN_PATH, return_data))


def serving(routes: web.RouteTableDef, declared: Callable[[], None]) -> Callable[[H], H]:
    """For ingest's handler of `declared`: adds it to `routes` on each path the contract gives."""

    def register(handler: H) -> H:
        for route in ROUTES:
            if route.declared is declared:
                routes.route(route.method, route.path)(handler)
        return handler

    return register


def served(server: str) -> list[Served]:
    """ingest's public routes, reached at `server` (its public URL), for a description."""
    return [Served(r.method, r.path, r.declared, server) for r in ROUTES]
