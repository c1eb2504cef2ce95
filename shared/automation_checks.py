"""Checks of an automation against its form: every name it uses must exist there."""

from shared.automation_rules import AllOf, Condition, DateReached, Rule
from shared.automations import META, PLACEHOLDER, AutomationDefinition
from shared.forms import FieldError, FieldType, FormDefinition


def _conditions(rule: Rule | None) -> list[Condition]:
    if rule is None:
        return []
    if isinstance(rule, Condition):
        return [rule]
    return [c for r in (rule.all if isinstance(rule, AllOf) else rule.any) for c in _conditions(r)]


def _date_problems(trigger: DateReached, form: FormDefinition, where: str) -> list[FieldError]:
    target = form.field(trigger.field)
    if target is None or target.type not in (FieldType.DATE, FieldType.DATETIME):
        return [FieldError(field=f"{where}.field", code="invalid", message=(
            f"form '{form.id}' has no date or datetime field '{trigger.field}'"))]
    if trigger.at is not None and target.type == FieldType.DATETIME:
        return [FieldError(field=f"{where}.at", code="invalid", message=(
            "'at' sets the time of day of a date field; a datetime field has its own"))]
    return []


def check_against_form(definition: AutomationDefinition, form: FormDefinition) -> list[FieldError]:
    """Every name the automation uses must exist on the form; one error per problem."""
    fields = {f.id for f in form.fields}
    errors: list[FieldError] = []

    def need(ok: bool, where: str, message: str) -> None:
        if not ok:
            errors.append(FieldError(field=where, code="invalid", message=message))

    for i, trigger in enumerate(definition.when):
        for name in getattr(trigger, "fields", None) or []:
            need(name in fields or name == "status", f"when[{i}].fields",
                 f"form '{form.id}' has no field '{name}'")
        for key in ("to", "until_status"):
            for status in getattr(trigger, key, None) or []:
                need(status in form.statuses, f"when[{i}].{key}", f"'{status}' is not a status "
                     f"of form '{form.id}' ({', '.join(form.statuses)})")
        if isinstance(trigger, DateReached):
            errors.extend(_date_problems(trigger, form, f"when[{i}]"))
    for condition in _conditions(definition.if_):
        need(condition.field in fields or condition.field in META, "if",
             f"'{condition.field}' is neither a field of form '{form.id}' nor case metadata "
             f"({', '.join(META)})")
    for n, item in enumerate(definition.action.content):
        where = f"action.content[{n}]"
        if item.meta is not None:
            need(item.meta in META, f"{where}.meta",
                 f"content '{item.key}': unknown metadata '{item.meta}' (one of "
                 f"{', '.join(META)})")
        if item.field is not None:
            need(item.field in fields, f"{where}.field",
                 f"content '{item.key}': form '{form.id}' has no field '{item.field}'")
        for is_field, name in PLACEHOLDER.findall(item.template or ""):
            known = name in fields if is_field else name in META
            need(known, f"{where}.template", f"content '{item.key}': template names unknown "
                 f"{'field' if is_field else 'metadata'} '{name}'")
    for n, mapping in enumerate(definition.action.response):
        target = form.field(mapping.field)
        need(target is not None and target.type != FieldType.FILE,
             f"action.response[{n}].field",
             f"form '{form.id}' has no field '{mapping.field}' that response data can fill")
    return errors
