"""What an outgoing webhook sends: content items resolved against one case."""

import uuid
from dataclasses import dataclass
from typing import Any

from services.dispatcher.rules import metadata
from shared.automations import PLACEHOLDER, AutomationDefinition, ContentItem
from shared.events import CaseChanged
from shared.forms import FieldType, FormDefinition
from shared.settings import Settings
from shared.signing import UrlSigner, file_path, return_path


@dataclass(frozen=True)
class Links:
    """Signed, expiring URLs the content carries: files (24 h) and returnDataURL (2 h)."""

    settings: Settings

    @property
    def _signer(self) -> UrlSigner:
        return UrlSigner(self.settings.signing_key)

    def file_url(self, file_id: str) -> str:
        path = self._signer.sign("GET", file_path(file_id), self.settings.file_url_ttl_seconds)
        return self.settings.casestore_url.rstrip("/") + path

    def return_url(self, automation_id: uuid.UUID, case_id: uuid.UUID, delivery_id: uuid.UUID,
                   depth: int) -> str:
        path = return_path(str(automation_id), str(case_id), str(delivery_id), depth)
        signed = self._signer.sign("POST", path, self.settings.return_url_ttl_seconds)
        return self.settings.public_base_url.rstrip("/") + signed


@dataclass(frozen=True)
class Target:
    """The one delivery being built: which case, which automation, which delivery id."""

    automation_id: uuid.UUID
    delivery_id: uuid.UUID
    case: CaseChanged
    form: FormDefinition
    automation_depth: int = 0


def _field_value(target: Target, field_id: str, links: Links) -> Any:
    value = target.case.data.get(field_id)
    f = target.form.field(field_id)
    if f is not None and f.type == FieldType.FILE:
        return [links.file_url(str(item["id"])) for item in value or [] if isinstance(item, dict)]
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _resolve(item: ContentItem, target: Target, meta: dict[str, Any], links: Links) -> Any:
    if item.meta is not None:
        return meta.get(item.meta)
    if item.field is not None:
        return _field_value(target, item.field, links)
    if item.template is not None:
        return PLACEHOLDER.sub(
            lambda m: _text(_field_value(target, m.group(2), links) if m.group(1)
                            else meta.get(m.group(2))), item.template)
    return item.value


def build_content(definition: AutomationDefinition, target: Target, links: Links
                  ) -> dict[str, Any]:
    meta = metadata(target.case, target.form.id)
    content = {item.key: _resolve(item, target, meta, links)
               for item in definition.action.content}
    if definition.action.response:
        content["returnDataURL"] = links.return_url(target.automation_id, target.case.case_id,
                                                    target.delivery_id, target.automation_depth)
    return content

