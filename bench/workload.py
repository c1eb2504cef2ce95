"""The one workload every step uses: the form, the POST body, the message and the row.

The bare limits send exactly what Casewire sends: the same POST body to the bare aiohttp server,
the envelope ingest publishes for that body to the bare broker, and the case row casestore
writes for it to the bare database.
"""

import uuid
from typing import Any

from shared.event_payloads import CaseCreateRequested
from shared.events import CASE_CREATE_REQUESTED, Envelope, new_event

CREATOR = "Addon - Incoming Webhook"

# `text-field` carries "b<request id>|<monotonic send time>" (see bench.loadgen and
# bench.receiver); the rest is a typical small case with a field of each common kind.
BODY_TEMPLATE = (b'{"text-field": "b%(id)d|%(t).6f", "email": "bench@example.com", '
                 b'"amount": 42, "priority": "high"}')


def body_for(request_id: int, sent: float) -> dict[str, Any]:
    """The data of one case as ingest validates it (what casestore stores)."""
    return {"text-field": f"b{request_id}|{sent:.6f}", "email": "bench@example.com",
            "amount": 42, "priority": "high"}


def form(form_id: str) -> dict[str, Any]:
    return {
        "id": form_id,
        "name": f"Benchmark {form_id}",
        "sections": [{"name": "Request"}, {"name": "Handling"}],
        "fields": [
            {"id": "text-field", "label": "Text", "type": "text", "mandatory": True},
            {"id": "email", "label": "E-mail", "type": "email"},
            {"id": "amount", "label": "Amount", "type": "number"},
            {"id": "priority", "label": "Priority", "type": "select",
             "options": ["low", "normal", "high"]},
            {"id": "notes", "label": "Notes", "type": "textarea", "section": 1},
        ],
        "statuses": ["registered", "in_progress", "closed"],
    }


def automation(url: str, *, timeout: int = 10, name: str = "bench receiver"
               ) -> dict[str, Any]:
    """One outgoing webhook on case creation; `t` carries the request id and send time."""
    return {
        "name": name,
        "when": [{"event": "case_created"}],
        "action": {"type": "outgoing_webhook",
                   "content": [{"key": "t", "field": "text-field"},
                               {"key": "caseNumber", "meta": "case_number"},
                               {"key": "priority", "field": "priority"}],
                   "settings": {"method": "POST", "url": url, "attempts": 3, "timeout": timeout,
                                "protocol": "json"}},
    }


def envelope(form_id: str, request_id: int) -> Envelope:
    """The case.create_requested command ingest publishes for one request."""
    event_id = uuid.uuid4()
    command = CaseCreateRequested(webhook_id=uuid.uuid4(), data=body_for(request_id, 0.0),
                                  creator=CREATOR, skip_triggers=False, skip_validate=False)
    return new_event(CASE_CREATE_REQUESTED, command, form_id=form_id, case_id=event_id,
                     event_id=event_id)


def case_row(form_id: str, number: int) -> tuple[Any, ...]:
    """(id, form_id, case_number, status, data, creator): the columns casestore inserts."""
    return (uuid.uuid4(), form_id, number, "registered", body_for(number, 0.0), CREATOR)


CASE_COLUMNS = ("id", "form_id", "case_number", "status", "data", "creator")
