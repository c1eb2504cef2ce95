"""The Form Structure a sender of incoming webhooks reads: the fields it may set, the webhook
URL, and a curl line that succeeds as it stands (the seed's "Form Structure" page)."""

import shlex

import orjson

from shared.forms import FieldType, FormDefinition, sample_value


def curl_example(url: str, form: FormDefinition) -> str:
    """A request that succeeds as it stands: every mandatory field, or else one text field."""
    settable = [f for f in form.fields if f.section == 0 and f.type != FieldType.FILE]
    chosen = [f for f in settable if f.mandatory] or [
        f for f in settable if f.type in (FieldType.TEXT, FieldType.TEXTAREA)][:1]
    body = orjson.dumps({f.id: sample_value(f) for f in chosen}).decode()
    return (f"curl -X POST -H 'Content-type: application/json' \\\n"
            f"--data {shlex.quote(body)} \\\n{url}")


def structure(form: FormDefinition, url: str | None) -> dict[str, object]:
    """The "Form Structure" of the form with this webhook URL (None: it has no webhook)."""
    return {
        "form": {"id": form.id, "name": form.name},
        "sections": [{"index": i, "name": s.name} for i, s in enumerate(form.sections)],
        "fields": [{"id": f.id, "label": f.label, "type": f.type, "section": f.section,
                    "mandatory": f.mandatory, "options": f.options,
                    "settable_by_incoming_webhook": f.section == 0 and f.type != FieldType.FILE}
                   for f in form.fields],
        "statuses": form.statuses,
        "incoming_webhook_url": url,
        "send_directly_as_json": curl_example(url or "https://yourWebhookUrl", form),
    }
