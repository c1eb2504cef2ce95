"""When and If: does this case event fire this automation? (If itself: shared/conditions.py)"""


from shared.automation_rules import (
    CaseChangedTrigger,
    CaseCreated,
    DateReached,
    FieldChanged,
    FieldFilled,
    LeadTimeExceeded,
    StatusChanged,
    Trigger,
)
from shared.automations import AutomationDefinition
from shared.conditions import holds
from shared.event_payloads import CaseChanged, FieldChange
from shared.events import CASE_CREATED, CASE_TIMER_DUE, CASE_UPDATED
from shared.form_values import is_empty


def _trigger_fires(trigger: Trigger, event_type: str, changes: dict[str, FieldChange]) -> bool:
    if isinstance(trigger, DateReached | LeadTimeExceeded):
        # casestore's timer names the automation; the consumer looks at that one alone.
        return event_type == CASE_TIMER_DUE
    if isinstance(trigger, CaseCreated):
        return event_type == CASE_CREATED
    if event_type != CASE_UPDATED:
        return False  # field and status triggers watch existing cases; deletion fires nothing
    match trigger:
        case CaseChangedTrigger():
            return bool(changes)
        case FieldChanged(fields=fields):
            return any(f in changes for f in fields)
        case FieldFilled(fields=fields):
            return any(f in changes and is_empty(changes[f].old) and not is_empty(changes[f].new)
                       for f in fields)
        case StatusChanged(to=to):
            status = changes.get("status")
            return status is not None and (to is None or status.new in to)
    return False


def fires(definition: AutomationDefinition, event_type: str, case: CaseChanged,
          form_id: str) -> bool:
    """Any When entry matches the event and the If (if any) holds on the case as it now is."""
    changes = {c.field: c for c in case.changes}
    if not any(_trigger_fires(t, event_type, changes) for t in definition.when):
        return False
    return definition.if_ is None or holds(definition.if_, case, form_id)
