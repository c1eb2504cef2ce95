"""What each event carries: the payload models of the event types in shared/events.py, whose
PAYLOADS pairs each type with its model."""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from shared.cases import StoredCase


class IdempotencyKey(BaseModel):
    """An incoming request's Idempotency-Key: casestore creates one case per key and window."""

    # The key as the client sent it, scoped to its webhook and authenticated user (JSON text).
    scope: str
    # sha256 of the validated data and options: the same key with another body is refused.
    body_hash: str
    expires_at: datetime


class CaseCreateRequested(BaseModel):
    """ingest -> casestore: create one case from a validated incoming webhook request."""

    webhook_id: uuid.UUID
    data: dict[str, Any]
    creator: str
    skip_triggers: bool = False
    skip_validate: bool = False
    # The revision of the form `data` was validated against (casestore checks it again).
    form_revision: int | None = None
    idempotency_key: IdempotencyKey | None = None


class FieldChange(BaseModel):
    field: str
    old: Any = None
    new: Any = None


class TimerDue(BaseModel):
    """What made casestore's scheduler announce a case: one time trigger of one automation."""

    automation_id: uuid.UUID
    trigger_index: int  # which entry of the automation's `when`
    trigger: str  # its event: date_reached or lead_time_exceeded
    due_at: datetime
    late_by: float  # seconds after due_at it fired (downtime, or a busy scheduler)
    occurrence: int = 0  # 0 the first time, then one per repetition


class CaseChanged(BaseModel):
    """casestore -> everyone: payload of case.created, case.updated and case.deleted."""

    case_id: uuid.UUID
    case_number: int
    status: str
    previous_status: str | None = None
    data: dict[str, Any]
    creator: str
    created_at: datetime
    updated_at: datetime
    version: int
    changes: list[FieldChange] = Field(default_factory=list)
    author: str
    skip_triggers: bool = False
    # How many automations deep this change is; bounds automation chains.
    automation_depth: int = 0
    source_automation_id: uuid.UUID | None = None
    # The form's revision when the case changed: its automations as of then (or later) apply.
    form_revision: int = 0
    # Set on case.timer_due: the case as it is now, announced for one automation's time trigger.
    timer: TimerDue | None = None

    @classmethod
    def from_row(cls, row: StoredCase, author: str, **change: Any) -> "CaseChanged":
        """A stored case as this payload; `change` describes what changed."""
        return cls(case_id=row.id, case_number=row.case_number, status=row.status,
                   data=row.data, creator=row.creator, created_at=row.created_at,
                   updated_at=row.updated_at, version=row.version, author=author, **change)


class TestSend(BaseModel):
    """casestore -> dispatcher over HTTP (`POST /internal/automations/{id}/test`), and the admin
    API's body for it: one test attempt for this case, or with none for a sample case made
    from the form's fields."""

    model_config = ConfigDict(extra="forbid")
    case_id: uuid.UUID | None = None


FormChangeKind = Literal["created", "updated", "deleted", "webhook"]


class FormChanged(BaseModel):
    form_id: str
    change: FormChangeKind


class CaseResponseData(BaseModel):
    """dispatcher or ingest -> casestore: values a receiver answered, to write into the case."""

    case_id: uuid.UUID
    automation_id: uuid.UUID
    delivery_id: uuid.UUID
    values: dict[str, Any]
    # The automation depth of the change that fired the delivery; the write is one deeper.
    automation_depth: int = 0
    source: Literal["response", "return_url"] = "response"


class RecordedRequest(BaseModel):
    method: str
    url: str
    headers: dict[str, str]  # secrets (Authorization) already masked
    body: str


class Attempt(BaseModel):
    id: uuid.UUID
    number: int
    started_at: datetime
    duration_ms: float
    request: RecordedRequest
    response_status: int | None = None
    response_headers: dict[str, str] = Field(default_factory=dict)
    response_body: str | None = None  # an excerpt, up to the configured size
    error: str | None = None


# pending: not tried yet; sending: an attempt is out; retrying: waiting for its next attempt.
DeliveryState = Literal["pending", "sending", "retrying", "succeeded", "failed"]
# What one attempt's answer means for the delivery: done, worth another try, never worth one,
# or the receiver is gone for good (410: the automation is disabled).
Verdict = Literal["succeeded", "retry", "final", "gone"]


class DeliveryRequested(BaseModel):
    """dispatcher -> casestore: an automation fired for a case; schedule the delivery.

    The case event is acknowledged once this is confirmed: from then on the delivery is
    casestore's durable work (its attempts, waits and retries), not the dispatcher's memory.
    """

    delivery_id: uuid.UUID
    automation_id: uuid.UUID
    event_id: uuid.UUID  # the case event that fired it
    webhook_id: str  # Standard Webhooks message id, stable across retries and replays
    case: "CaseChanged"
    once: bool = False  # casestore grants it only if it is the automation's first for the case
    form_id: str = ""  # the case's form (a message of one request had it on the envelope)
    # Set when the dispatcher sends the first attempt itself (it can start it soon, see
    # services/dispatcher/in_flight.py): casestore records the attempt as out until then, and
    # hands out only what comes after it.
    first_attempt_until: datetime | None = None
    # The incoming request's: every attempt casestore hands out, and the case update its
    # answer causes, stay traced to it (a bundle's envelope has one correlation id for all).
    correlation_id: str | None = None
    # How that first attempt went, when it ended before the request went out: casestore
    # settles it in the same transaction, one message and one transaction fewer per case.
    report: "DeliveryAttempted | None" = None


class DeliveryDue(BaseModel):
    """casestore -> dispatcher: send attempt `number` of a delivery now."""

    delivery_id: uuid.UUID
    automation_id: uuid.UUID
    form_id: str
    form_revision: int  # the automation as of this revision (or newer) applies
    webhook_id: str
    number: int
    # The case as it was when the automation fired; None for an operational event, whose
    # `payload` is the exact JSON to send (services/casestore/operational.py).
    case: "CaseChanged | None"
    # casestore sends it again after this; a copy that arrives later is not sent.
    lease_until: datetime
    payload: dict[str, Any] | None = None


class DeliveryAttempted(BaseModel):
    """dispatcher -> casestore: how one attempt went; casestore decides what comes next."""

    delivery_id: uuid.UUID
    automation_id: uuid.UUID
    attempt: Attempt
    verdict: Verdict
    retry_after: float | None = None  # seconds the receiver asked for, capped
    # Response data of a 2xx answer, by case field, written in the same transaction.
    values: dict[str, Any] = Field(default_factory=dict)
    automation_depth: int = 0
    # The correlation id the attempt was sent under; the case update its answer causes carries
    # it (reports travel many to a message, under the message's own).
    correlation_id: str | None = None
    # The endpoint's limit of requests in flight in the dispatcher that sent it, after this
    # answer: casestore hands out the endpoint's attempts ahead by it.
    limit: int | None = None


class DeliveryRequests(BaseModel):
    """`delivery.requested`: the deliveries one dispatcher requested together, one message
    for all (each broker message costs far more than its bytes)."""

    requests: list[DeliveryRequested]

    @model_validator(mode="before")
    @classmethod
    def one_request(cls, data: Any, info: ValidationInfo) -> Any:
        """Also a message from before requests travelled together, still queued after an
        upgrade: a single request as the data, its form on the envelope (the context)."""
        if not isinstance(data, dict) or "requests" in data:
            return data
        if data.get("form_id", "") == "" and info.context is not None:
            data = {**data, "form_id": info.context.form_id or ""}
        return {"requests": [data]}


class DeliveryReports(BaseModel):
    """`delivery.attempted`: attempts one dispatcher reports together, in the order they
    ended."""

    reports: list[DeliveryAttempted]

    @model_validator(mode="before")
    @classmethod
    def one_report(cls, data: Any) -> Any:
        """Also a message from before reports travelled together: a single one as the data."""
        if not isinstance(data, dict) or "reports" in data:
            return data
        return {"reports": [data]}


class AutomationDisabled(BaseModel):
    automation_id: uuid.UUID
    form_id: str
    reason: str
