"""casestore's domain errors; handlers turn them into HTTP answers, consumers into acks."""

from shared.forms import FieldError


class RecordNotFound(Exception):
    """The form, case, user or webhook does not exist."""


class Conflict(Exception):
    """The request clashes with existing state (an id already taken)."""


class ValidationFailed(Exception):
    """Case data or a request body broke the form's rules; carries one error per problem."""

    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors
