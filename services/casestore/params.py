"""Reading path and query values: a malformed one is a 400 (or a 404 for a path id), never a 500."""

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from aiohttp import web

from services.casestore.errors import RecordNotFound, ValidationFailed
from shared.forms import FieldError
from shared.inputs import whole_number


def invalid(name: str, message: str) -> ValidationFailed:
    return ValidationFailed([FieldError(field=name, code="invalid", message=message)])


def path_uuid(request: web.Request, name: str, what: str) -> uuid.UUID:
    """A path id that is not a UUID names nothing that exists: 404, like an unknown id."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError as exc:
        raise RecordNotFound(f"no {what} has that id") from exc


def query_int(request: web.Request, name: str, default: int | None, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = whole_number(raw, 1, high)
    if value is None:
        raise invalid(name, f"expected an integer from 1 to {high}")
    return value


def query_float(request: web.Request, name: str, default: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= high:  # NaN fails this too
        raise invalid(name, f"expected a number from 0 to {high:g}")
    return value


def query_uuid(request: web.Request, name: str) -> uuid.UUID | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise invalid(name, "expected a UUID") from exc


def query_time(query: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 time with its offset (UTC if none is given)."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise invalid(name, "expected an ISO 8601 time, e.g. 2026-12-01T08:00:00Z") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
