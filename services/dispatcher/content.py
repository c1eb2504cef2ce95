"""What an outgoing webhook sends: content items resolved against one case."""

import uuid
from dataclasses import dataclass
from typing import Any

from services.dispatcher.request import form_text
from shared.automations import PLACEHOLDER, AutomationDefinition, ContentItem, metadata
from shared.event_payloads import CaseChanged
from shared.forms import FieldType, FormDefinition
from shared.settings import Settings
from shared.signing import file_url, return_url


@dataclass(frozen=True)
class Delivery:
    """One delivery, as its request is built from it: which automation sends which case (of
    which form), under which delivery id."""

    automation_id: uuid.UUID
    delivery_id: uuid.UUID
    case: CaseChanged
    form: FormDefinition
    automation_depth: int = 0
    # A test send signs its returnDataURL for this case id instead, one that no case has: a
    # receiver answering a test is accepted, and its answer written nowhere.
    return_case_id: uuid.UUID | None = None


def _field_value(delivery: Delivery, field_id: str, settings: Settings) -> Any:
    value = delivery.case.data.get(field_id)
    f = delivery.form.field(field_id)
    if f is not None and f.type == FieldType.FILE:
        files = [item for item in value or [] if isinstance(item, dict)]
        return [file_url(settings, str(item["id"])) for item in files]
    return value


def _text(value: Any) -> str:
    """A value inside a template: as a receiver would type it, a list's items comma separated."""
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return form_text(value)


def _resolve(item: ContentItem, delivery: Delivery, meta: dict[str, Any],
             settings: Settings) -> Any:
    if item.meta is not None:
        return meta.get(item.meta)
    if item.field is not None:
        return _field_value(delivery, item.field, settings)
    if item.template is not None:
        return PLACEHOLDER.sub(
            lambda m: _text(_field_value(delivery, m.group(2), settings) if m.group(1)
                            else meta.get(m.group(2))), item.template)
    return item.value


def build_content(definition: AutomationDefinition, delivery: Delivery, settings: Settings
                  ) -> dict[str, Any]:
    meta = metadata(delivery.case, delivery.form.id)
    content = {item.key: _resolve(item, delivery, meta, settings)
               for item in definition.action.content}
    if definition.action.response:
        content["returnDataURL"] = return_url(
            settings, str(delivery.automation_id),
            str(delivery.return_case_id or delivery.case.case_id), str(delivery.delivery_id),
            delivery.automation_depth)
    return content

