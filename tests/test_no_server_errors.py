"""A search of every route of the three services for a 5xx.

Requests are built from the route tables (not from the OpenAPI description, so the console,
the signed downloads and the dispatcher's internal API are searched too) out of the values
that have made 500s: numbers beyond 4,300 digits, bytes that are not UTF-8 in paths, queries,
headers, cookies and bodies, JSON nested past Python's recursion limit, forms that are not
UTF-8. Each starts from a request that gets in (the admin token, a console session and its
CSRF token, the ids of what exists, a valid signed query) so the value reaches the code it
aims at. First every route takes each kind of hostile value once, in each place, the rest of
the request valid; then Hypothesis mixes them at random. Requests are written byte for byte,
since HTTP clients refuse such headers. The stack is a fresh one (what the search writes stays
there).
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import hypothesis
import pytest
from hypothesis import strategies as st

from shared.openapi import PATH_PARAM
from shared.signing import return_url
from tests.hostile import (
    DEEP_JSON,
    HUGE_DIGITS,
    NOT_UTF8,
    console_session,
    encoded,
    one_of_everything,
    raw_request,
    request_head,
)
from tests.receiver import Receiver
from tests.stack import FACTORIES, Stack, isolated_settings, running_stack

RANDOM_EXAMPLES_PER_ROUTE = 15
TEXTS: list[str | bytes] = ["", "0", "-1", "²", HUGE_DIGITS, "1e999", "nan", "\x00", "ü", "%",
                            "a" * 300, NOT_UTF8, b"\xed\xa0\x80"]
QUERY_NAMES = ["limit", "before", "after", "expires", "signature", "since", "until", "state",
               "automation", "case", "status", "name", "overlap_hours", "next", "notice", "n"]
BODIES = [b"", b"[]", DEEP_JSON, b'{"n": ' + HUGE_DIGITS.encode() + b"}",
          b'{"n": 123456789012345678901234567890}', NOT_UTF8, b'{"\xff": "\xfe"}',
          b"token=\xff\xfe&csrf=\xff&next=%ff", b'{"username": "\xff", "password": "x"}',
          b"--b\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\n\xff\xfe\r\n--b--\r\n"]
CONTENT_TYPES = [b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=b",
                 b"text/plain", NOT_UTF8]
# Per header: what works first, then what is hostile.
HOSTILE_HEADERS = {
    "Authorization": [b"Bearer " + NOT_UTF8, NOT_UTF8],
    "Cookie": [b"casewire_console=" + NOT_UTF8 + b".a.b",
               b"casewire_console=" + HUGE_DIGITS.encode() + b".a.b", NOT_UTF8],
    "X-CSRF-Token": [NOT_UTF8], "Auth-key": [NOT_UTF8, b"x" * 300],
    "Idempotency-Key": [NOT_UTF8], "X-Correlation-ID": [NOT_UTF8],
    "X-Forwarded-For": [NOT_UTF8, b"1.2.3.4, ::1"], "X-Forwarded-Proto": [NOT_UTF8],
    "Origin": [NOT_UTF8]}


@dataclass(frozen=True)
class Route:
    service: str
    method: str
    path: str


@dataclass(frozen=True)
class Request:
    """One request as its parts; `head` writes it."""

    route: Route
    path: dict[str, str | bytes]  # path parameters
    query: dict[str, str | bytes]
    headers: dict[str, bytes]
    body: bytes

    def head(self) -> bytes:
        path = PATH_PARAM.sub(lambda m: encoded(self.path[m.group(1)]), self.route.path)
        if self.route.path.endswith(("/static", "/assets")):
            path += "/" + encoded(self.path.get("file", "console.css"))
        query = "&".join(f"{name}={encoded(value)}" for name, value in self.query.items())
        return request_head(self.route.method, (path + (f"?{query}" if query else "")).encode(),
                            list(self.headers.items()))


@dataclass
class Target:
    stack: Stack
    known: dict[str, str]
    cookie: bytes
    csrf: bytes
    signed: dict[str, str]  # route path: the query of a valid signed URL on it

    def valid(self, route: Route) -> Request:
        """A request to `route` that gets past every check (what the route does with it
        aside): what exists, the token, a console session and its CSRF token."""
        names = PATH_PARAM.findall(route.path)
        return Request(route, {n: self.known.get(n, "x") for n in names},
                       dict(parse_qsl(self.signed.get(route.path, ""))),
                       {"Authorization": f"Bearer {self.stack.settings.admin_token}".encode(),
                        "Cookie": self.cookie, "X-CSRF-Token": self.csrf,
                        "Content-Type": b"application/json"}, b"{}")


def _disruptive(route: Route) -> bool:
    """Whether a valid request may take away what later requests aim at."""
    return route.method == "DELETE" or route.path.endswith(("/rotate", "/sign-out"))


def every_route(stack: Stack) -> list[Route]:
    """Each service's route table (the console's included), HEAD aside; those that delete,
    rotate or sign out last."""
    return sorted((Route(service, route.method, route.resource.canonical)
                   for service, factory in FACTORIES.items()
                   for route in factory(stack.settings).router.routes()
                   if route.resource is not None and route.method != "HEAD"), key=_disruptive)


@pytest.fixture(scope="module")
async def target(receiver: Receiver) -> AsyncIterator[Target]:
    async with running_stack(isolated_settings(f"hostile{uuid.uuid4().hex[:8]}")) as stack:
        known = await one_of_everything(stack, receiver)
        cookie, csrf = await console_session(stack)
        returns = urlsplit(return_url(stack.settings, known["automation_id"], known["case_id"],
                                      known["delivery_id"], 0)).query
        yield Target(stack, known, cookie, csrf, {
            "/files/{file_id}": urlsplit(known["file_url"]).query,
            "/return/{automation_id}/{case_id}/{delivery_id}/{depth}": returns})


def one_hostile_change(valid: Request) -> Iterator[Request]:
    """The valid request with one thing made hostile, each kind of value in each place."""
    # A signed URL's values one at a time (the other one valid); elsewhere all at once.
    query_names = [[name] for name in valid.query] or [QUERY_NAMES]
    for text in TEXTS:
        yield replace(valid, path={name: text for name in valid.path})
        for names in query_names:
            yield replace(valid, query={**valid.query, **dict.fromkeys(names, text)})
    for name, values in HOSTILE_HEADERS.items():
        for value in values:
            yield replace(valid, headers={**valid.headers, name: value})
    for body in BODIES:
        for content_type in [b"application/json", *CONTENT_TYPES]:
            yield replace(valid, body=body, headers={**valid.headers,
                                                     "Content-Type": content_type})


NO_ANSWER = 0


async def answer_status(target: Target, request: Request) -> int:
    """The status it is answered with; NO_ANSWER if none came within 30 s."""
    try:
        answer = await raw_request(target.stack.port(request.route.service), request.head(),
                                   request.body, within=30)
    except TimeoutError:
        return NO_ANSWER
    return answer.status


def acceptable(status: int) -> bool:
    return NO_ANSWER < status < 500


@pytest.mark.timeout(600)
async def test_every_route_takes_each_kind_of_hostile_value_without_a_server_error(
        target: Target) -> None:
    routes = every_route(target.stack)
    assert len(routes) > 60
    failures = []
    for route in routes:
        for request in one_hostile_change(target.valid(route)):
            if not acceptable(status := await answer_status(target, request)):
                failures.append(f"{status}: {request.head()!r} {request.body[:100]!r}")
    assert failures == [], "\n".join(failures[:50])


def _hostile(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values) | st.text(max_size=12) | st.binary(max_size=32)



def random_request(valid: Request, draw: Any) -> Request:
    """The valid request with any of its parts, in any mix, made hostile."""
    def maybe(value: Any, hostile: st.SearchStrategy[Any]) -> Any:
        return draw(st.booleans().flatmap(lambda ok: st.just(value) if ok else hostile))

    path = {name: maybe(value, _hostile(TEXTS)) for name, value in valid.path.items()}
    names = draw(st.lists(st.sampled_from(QUERY_NAMES), max_size=3))
    query = {**valid.query, **{n: maybe(valid.query.get(n, "1"), _hostile(TEXTS))
                               for n in [*valid.query, *names]}}
    headers = {name: maybe(valid.headers.get(name, b"x"), st.sampled_from(values))
               for name, values in HOSTILE_HEADERS.items() if draw(st.booleans())}
    body = maybe(valid.body, st.sampled_from(BODIES) | st.binary(max_size=32))
    content_type = maybe(b"application/json", st.sampled_from(CONTENT_TYPES))
    return replace(valid, path=path, query=query, body=body,
                   headers={**valid.headers, **headers, "Content-Type": content_type})


def search(target: Target, route: Route, loop: asyncio.AbstractEventLoop) -> None:
    """Random hostile requests to one route; a 5xx fails with the request."""

    @hypothesis.settings(max_examples=RANDOM_EXAMPLES_PER_ROUTE, deadline=None, database=None,
                         derandomize=True, suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.generate, hypothesis.Phase.shrink])
    @hypothesis.given(data=st.data())
    def one_request(data: st.DataObject) -> None:
        request = random_request(target.valid(route), data.draw)
        status = asyncio.run_coroutine_threadsafe(answer_status(target, request), loop).result()
        assert acceptable(status), (request.head(), request.body[:200], status)

    one_request()


# The services run on this test's event loop, in another thread than Hypothesis, and use
# `random` (jittered waits) meanwhile: Hypothesis takes that for its strategies using it.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@pytest.mark.timeout(600)
async def test_hypothesis_finds_no_server_error_on_any_route(target: Target) -> None:
    loop = asyncio.get_running_loop()
    failures = []
    for route in every_route(target.stack):
        try:
            await asyncio.to_thread(search, target, route, loop)
        except Exception as exc:
            failures.append(f"{route}: {exc}")
    assert failures == [], "\n\n".join(failures)
