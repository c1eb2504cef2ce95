"""Event contracts on the wire: the event types, one envelope, and the payload model each type
carries (PAYLOADS; the models are in shared/event_payloads.py)."""

import builtins
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import PermanentMessageError
from shared.event_payloads import (
    AutomationDisabled,
    CaseChanged,
    CaseCreateRequested,
    CaseResponseData,
    DeliveryDue,
    DeliveryReports,
    DeliveryRequests,
    FormChanged,
)
from shared.logging import bound_correlation_id, correlation_id_or_new

M = TypeVar("M", bound=BaseModel)

CASE_CREATE_REQUESTED = "case.create_requested"
CASE_CREATED = "case.created"
CASE_UPDATED = "case.updated"
CASE_DELETED = "case.deleted"
CASE_TIMER_DUE = "case.timer_due"
FORM_CHANGED = "form.changed"
CASE_RESPONSE_DATA = "case.response_data"
DELIVERY_REQUESTED = "delivery.requested"
DELIVERY_DUE = "delivery.due"
DELIVERY_ATTEMPTED = "delivery.attempted"
AUTOMATION_DISABLED = "automation.disabled"

# The payload model each event type carries (its envelope's `data`).
PAYLOADS: dict[str, type[BaseModel]] = {
    CASE_CREATE_REQUESTED: CaseCreateRequested,
    CASE_CREATED: CaseChanged,
    CASE_UPDATED: CaseChanged,
    CASE_DELETED: CaseChanged,
    CASE_TIMER_DUE: CaseChanged,
    FORM_CHANGED: FormChanged,
    CASE_RESPONSE_DATA: CaseResponseData,
    DELIVERY_REQUESTED: DeliveryRequests,
    DELIVERY_DUE: DeliveryDue,
    DELIVERY_ATTEMPTED: DeliveryReports,
    AUTOMATION_DISABLED: AutomationDisabled,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """The envelope every message carries; `data` holds the type's payload."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: str
    causation_id: str | None = None
    form_id: str | None = None
    case_id: uuid.UUID | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def from_bytes(cls, body: bytes) -> "Envelope":
        return cls.model_validate_json(body)

    def payload(self, model: builtins.type[M]) -> M:
        """`data` as the model PAYLOADS pairs with this event's type, which the caller names
        (its handler knows what it takes); raises PermanentMessageError if the type carries
        another one, and pydantic's ValidationError if `data` does not fit it."""
        carried = PAYLOADS.get(self.type)
        if carried is not model:
            raise PermanentMessageError(
                f"{self.type} carries {carried.__name__ if carried else 'no known payload'}, "
                f"not {model.__name__}")
        return model.model_validate(self.data, context=self)


def new_event(
    type_: str,
    data: BaseModel | dict[str, Any],
    *,
    form_id: str | None = None,
    case_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    causation_id: str | None = None,
    correlation_id: str | None = None,
) -> Envelope:
    """Build an envelope; its correlation id is the given one, else the current context's."""
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    return Envelope(
        id=event_id or uuid.uuid4(),
        type=type_,
        correlation_id=correlation_id_or_new(correlation_id or bound_correlation_id()),
        causation_id=causation_id,
        form_id=form_id,
        case_id=case_id,
        data=payload,
    )

