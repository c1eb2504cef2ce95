"""casestore's domain errors; handlers turn them into HTTP answers, consumers into acks."""

from typing import TypeVar

from shared.forms import FieldError

T = TypeVar("T")


class RecordNotFound(Exception):
    """The form, case, user or webhook does not exist."""


def found(value: T | None, message: str) -> T:
    """`value` as the repo found it; RecordNotFound(message) if it found nothing."""
    if value is None:
        raise RecordNotFound(message)
    return value


class Conflict(Exception):
    """The request clashes with existing state (an id already taken)."""


class ValidationFailed(Exception):
    """Case data or a request body broke the form's rules; carries one error per problem."""

    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors
