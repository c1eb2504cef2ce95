"""casestore's domain errors. Each is also the HTTP answer it means (shared.web renders it);
consumers turn them into acks."""

from typing import TypeVar

from shared import web

T = TypeVar("T")


class RecordNotFound(web.NotFound):
    """The form, case, user or webhook does not exist."""


def found(value: T | None, message: str) -> T:
    """`value` as the repo found it; RecordNotFound(message) if it found nothing."""
    if value is None:
        raise RecordNotFound(message)
    return value


class Conflict(web.Conflict):
    """The request clashes with existing state (an id already taken)."""


class ValidationFailed(web.BadRequest):
    """Case data or a request body broke the form's rules; carries one error per problem."""
