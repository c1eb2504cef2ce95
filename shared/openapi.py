"""The OpenAPI 3.1 description, assembled at start-up from what each route declares.

A handler declares its operation with `@operation(...)`: its request body model (the pydantic
model the handler validates with), its answers by status (response models), and its query and
header parameters. `describe()` walks the routes a service really serves and builds the
document from those declarations and the models' JSON Schemas, so the description cannot drift
from the code: a route without a declaration fails the tests, a changed model changes the
document. Swagger UI (shipped by the `swagger-ui-bundle-v2` package, never a CDN) renders it.
"""

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

H = TypeVar("H", bound=Callable[..., Any])
REF = "#/components/schemas/{model}"
PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
# An answer's body: a response model, a JSON Schema or OpenAPI `content`, or None (no body).
Answer = type[BaseModel] | dict[str, Any] | None


@dataclass(frozen=True)
class Param:
    """A query or header parameter: its JSON Schema and what it is for."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    where: Literal["query", "header"] = "query"
    required: bool = False


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: Mapping[int | str, Answer]
    body: type[BaseModel] | None = None
    # A body that is not JSON (a file upload): its media types and JSON Schema.
    raw_body: Mapping[str, dict[str, Any]] | None = None
    params: tuple[Param, ...] = ()
    # Path parameters other than plain strings, e.g. {"case_id": {"format": "uuid"}}.
    path_schemas: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # Concrete paths documented instead of the route's (a route matching several suffixes).
    paths: tuple[str, ...] = ()
    public: bool = False  # no bearer token
    tags: tuple[str, ...] = ()


OPERATIONS: dict[Callable[..., Any], Operation] = {}


def operation(summary: str, *, responses: Mapping[int | str, Answer],
              body: type[BaseModel] | None = None, **details: Any) -> Callable[[H], H]:
    """Declare what a handler takes and answers; the handler itself is unchanged."""

    def register(handler: H) -> H:
        OPERATIONS[handler] = Operation(summary, responses, body, **details)
        return handler

    return register


@dataclass(frozen=True)
class Served:
    """One route as a service serves it, and the server URL it is reached at."""

    method: str
    path: str
    handler: Callable[..., Any]
    server: str | None = None


class _Schemas:
    """Every model the document refers to, rendered once into `components.schemas`."""

    def __init__(self) -> None:
        self.wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        if (model, mode) not in self.wanted:
            self.wanted.append((model, mode))
        return {"$model": (model, mode)}

    def resolve(self, document: Any) -> tuple[Any, dict[str, Any]]:
        refs, components = models_json_schema(self.wanted, ref_template=REF)

        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                if "$model" in node:
                    return refs[node["$model"]]
                return {k: walk(v) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v) for v in node]
            return node

        return walk(document), components.get("$defs", {})


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _response(status: int | str, answer: Answer, schemas: _Schemas) -> dict[str, Any]:
    """A model is a JSON body; a dict is a JSON Schema, or (with `content`) the answer's
    media types as OpenAPI writes them; None is no body."""
    described: dict[str, Any] = {"description": "answer" if status == "default"
                                 else f"{status} answer"}
    if answer is None:
        return described
    if isinstance(answer, dict):
        return described | (answer if "content" in answer else {"content": _content(answer)})
    return described | {"content": _content(schemas.ref(answer, "serialization"))}


def _parameters(path: str, op: Operation) -> list[dict[str, Any]]:
    in_path = [{"name": name, "in": "path", "required": True,
                "schema": {"type": "string", **op.path_schemas.get(name, {})}}
               for name in PATH_PARAM.findall(path)]
    return [*in_path, *({"name": p.name, "in": p.where, "required": p.required,
                         "description": p.description, "schema": p.schema}
                        for p in op.params)]


def _implied(path: str, op: Operation) -> dict[int | str, Answer]:
    """Error answers every such route can give: a missing token (401), a bad or too large
    body (400, 413), a bad query value (400), a path naming nothing (404)."""
    implied: dict[int | str, Answer] = {} if op.public else {401: Errors}
    if op.body is not None or op.raw_body is not None:
        implied |= {400: Errors, 413: Errors}
    if op.params:
        implied[400] = Errors
    if PATH_PARAM.search(path):
        implied[404] = Errors
    return implied


def _operation(route: Served, path: str, op: Operation, schemas: _Schemas) -> dict[str, Any]:
    responses: dict[int | str, Answer] = {**_implied(path, op), **op.responses}
    doc: dict[str, Any] = {
        "summary": op.summary, "operationId": f"{route.method.lower()}_{_slug(path)}",
        "parameters": _parameters(path, op),
        "responses": {str(status): _response(status, answer, schemas)
                      for status, answer in sorted(responses.items(), key=lambda i: str(i[0]))}}
    if op.tags:
        doc["tags"] = list(op.tags)
    if op.public:
        doc["security"] = []
    if op.body is not None:
        doc["requestBody"] = {"required": True,
                              "content": _content(schemas.ref(op.body, "validation"))}
    elif op.raw_body is not None:
        doc["requestBody"] = {"required": True, "content": {
            media: {"schema": schema} for media, schema in op.raw_body.items()}}
    return doc


def _slug(path: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "_", path).strip("_")


def undocumented(routes: Iterable[Served]) -> list[str]:
    """Routes no `@operation` describes."""
    return [f"{r.method} {r.path}" for r in routes if r.handler not in OPERATIONS]


def describe(routes: Iterable[Served], *, title: str, version: str, description: str = "",
             webhooks: dict[str, Any] | None = None,
             schemas: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (those with a declared operation), and of the
    `webhooks` the service sends (with the component `schemas` they name)."""
    models = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op = OPERATIONS.get(route.handler)
        if op is None or route.method == "HEAD":
            continue
        for path in op.paths or (route.path,):
            item = paths.setdefault(PATH_PARAM.sub(r"{\1}", path), {})
            item[route.method.lower()] = _operation(route, path, op, models)
            if route.server is not None:
                item["servers"] = [{"url": route.server}]
    resolved, components = models.resolve(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": resolved,
        "webhooks": webhooks or {},
        "components": {"schemas": {**components, **(schemas or {})}, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "CASEWIRE_ADMIN_TOKEN"}}},
    }


class ErrorEntry(BaseModel):
    field: str | None = None
    code: str
    message: str


class Errors(BaseModel):
    """Every error answer: one entry per problem."""

    errors: list[ErrorEntry]


class Empty(BaseModel):
    """`{}`"""


ANY_JSON: dict[str, Any] = {}


def errors(*statuses: int) -> dict[int | str, Answer]:
    """`{status: Errors}` for each status: the error answers of an operation."""
    return dict.fromkeys(statuses, Errors)
