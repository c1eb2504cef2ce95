"""The admin API's answers as models, for its OpenAPI description (shared/openapi.py).

Request bodies are described by the models the handlers validate with; these describe what the
handlers answer (each row's `to_api()`), and Schemathesis checks every answer against them in
`make test` (tests/test_openapi.py), so a change to an answer that is not made here fails.
"""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from shared.automations import AutomationDefinition
from shared.event_payloads import DeliveryState
from shared.forms import FieldType, FormDefinition
from shared.incoming_signatures import Verification


class FormList(BaseModel):
    forms: list[FormDefinition]


class FormName(BaseModel):
    id: str
    name: str


class SectionEntry(BaseModel):
    index: int
    name: str


class StructureField(BaseModel):
    id: str
    label: str
    type: FieldType
    section: int
    mandatory: bool
    options: list[str] | None
    settable_by_incoming_webhook: bool


class FormStructure(BaseModel):
    """The "Form Structure": every field, the webhook URL and a ready `curl` line."""

    form: FormName
    sections: list[SectionEntry]
    fields: list[StructureField]
    statuses: list[str]
    incoming_webhook_url: str | None
    send_directly_as_json: str


class Webhook(BaseModel):
    url: str
    token: str
    enabled: bool
    authenticate_user: bool
    # How a sender's signature is checked; its secret shown for standard-webhooks (the sender
    # needs it), "***" for hmac-sha256.
    verify: Verification | None


class AuthKey(BaseModel):
    auth_key: str


class User(BaseModel):
    username: str
    forms: list[str]


class ListedUser(User):
    created_at: datetime


class UserList(BaseModel):
    users: list[ListedUser]


class Case(BaseModel):
    id: uuid.UUID
    form_id: str
    case_number: int
    status: str
    data: dict[str, Any]
    creator: str
    created_at: datetime
    updated_at: datetime
    version: int


class HistoryEntry(BaseModel):
    version: int
    author: str
    changed_at: datetime
    changes: list[dict[str, Any]]


class CaseWithHistory(Case):
    history: list[HistoryEntry]


class CaseList(BaseModel):
    cases: list[Case]
    total: int
    next_before: int | None


class Health(BaseModel):
    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    open_until: datetime | None
    failing_since: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    # The limit of requests in flight a dispatcher last reported for the endpoint (null: none
    # yet); it adapts to how the endpoint answers.
    concurrency_limit: int | None


class Automation(AutomationDefinition):
    """The definition (the password shown as "***") beside its id, state, health and secret."""

    id: uuid.UUID
    form_id: str
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    secret: str
    previous_secret_until: datetime | None
    health: Health
    created_at: datetime
    updated_at: datetime


class AutomationBody(AutomationDefinition):
    """The definition, and whether it is on (default: on when created, unchanged on PUT)."""

    enabled: bool | None = None


class AutomationList(BaseModel):
    automations: list[Automation]


class Delivery(BaseModel):
    id: uuid.UUID
    automation_id: uuid.UUID
    automation_name: str
    case_id: uuid.UUID | None  # null: an operational event's, of no case
    form_id: str
    event_id: uuid.UUID
    webhook_id: str
    state: DeliveryState
    schedule: Literal["standard", "extended"]
    attempt_count: int
    attempts_allowed: int
    next_attempt_at: datetime | None
    last_response_status: int | None
    last_error: str | None
    # Why a waiting delivery is not sent when due (its automation disabled, its endpoint
    # paused); null when nothing holds it.
    held: str | None
    created_at: datetime
    updated_at: datetime


class Attempt(BaseModel):
    id: uuid.UUID
    number: int
    started_at: datetime
    duration_ms: float
    request: dict[str, Any]
    response_status: int | None
    response_headers: dict[str, Any]
    response_body: str | None
    # The answer filled response_body's CASEWIRE_RESPONSE_EXCERPT_BYTES: the rest is not kept.
    response_body_cut: bool
    error: str | None


class DeliveryWithAttempts(Delivery):
    attempts: list[Attempt]


class DeliveryList(BaseModel):
    deliveries: list[Delivery]
    next_before: str | None


class ReplayRequested(BaseModel):
    delivery_id: uuid.UUID
    replay: Literal["requested"]


class Replayed(BaseModel):
    automation_id: uuid.UUID
    replayed: int


class Timer(BaseModel):
    id: int
    automation_id: uuid.UUID
    case_id: uuid.UUID
    trigger_index: int
    due_at: datetime
    occurrence: int


class CaseTimers(BaseModel):
    timers: list[Timer]


class AutomationTimers(CaseTimers):
    next_after: int | None


class FileEntry(BaseModel):
    id: uuid.UUID
    name: str
    content_type: str
    size: int


class FileInfo(FileEntry):
    case_id: uuid.UUID
    field_id: str
    created_at: datetime
    url: str


class Uploaded(FileEntry):
    url: str
    case: Case


class Account(BaseModel):
    username: str
    role: Literal["admin", "editor", "viewer"]
    has_password: bool
    disabled: bool
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class AccountList(BaseModel):
    accounts: list[Account]


class Token(BaseModel):
    id: uuid.UUID
    username: str
    name: str
    prefix: str  # the token's first characters
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool
    revoked_at: datetime | None


class NewToken(Token):
    token: str  # shown this once, never again


class TokenList(BaseModel):
    tokens: list[Token]


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    via: str
    action: str
    target_type: str
    target_id: str
    diff: dict[str, Any]


class AuditLog(BaseModel):
    entries: list[AuditEntry]
    next_before: int | None


class OperationalWebhook(BaseModel):
    automation_id: uuid.UUID  # its deliveries are listed under this automation
    url: str
    enabled: bool
    events: list[str]
    secret: str  # whsec_...; "***" but for admins
    updated_at: datetime


def shown(model: type[BaseModel], value: object) -> dict[str, Any]:
    """A row as the answer `model` describes it: the model, not the row, builds the JSON."""
    return model.model_validate(value, from_attributes=True).model_dump(mode="json")
