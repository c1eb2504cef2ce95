"""A receiver's answer (response data or a returnDataURL post) written into its case."""

from typing import Any

import structlog

from services.casestore import automations, cases
from services.casestore.repo import Conn
from services.casestore.repo import automations as automation_rows
from services.casestore.repo import cases as case_rows
from shared.event_payloads import CaseResponseData
from shared.form_values import validate_case_data
from shared.forms import FormDefinition

log = structlog.get_logger(__name__)


def _fitting_values(form: FormDefinition, answer: CaseResponseData) -> dict[str, Any]:
    """The answer's values that fit the form; the others are logged."""
    # check_mandatory: a receiver may fill or change a mandatory field, never empty it.
    clean, errors = validate_case_data(form, answer.values, check_mandatory=True, partial=True)
    for error in errors:
        log.warning("response_value_skipped", case_id=str(answer.case_id), field=error.field,
                    code=error.code, reason=error.message)
    return clean


async def write_response_data(conn: Conn, answer: CaseResponseData,
                              causation_id: str) -> case_rows.CaseRow | None:
    """Write the values that fit the form; the rest is logged and skipped.

    A receiver's bad value must not hold back its good ones, nor make the message poison.
    None if there is nothing to write into (the case is gone, or belongs to another form).
    """
    loaded = await cases.load_locked(conn, answer.case_id)
    if loaded is None:
        log.info("response_data_case_gone", case_id=str(answer.case_id))
        return None
    current, form = loaded
    automation = await automation_rows.get_automation(conn, answer.automation_id)
    if automation is not None and automation.form_id != current.form_id:
        log.warning("response_data_form_mismatch", case_id=str(answer.case_id),
                    automation_id=str(answer.automation_id))
        return None
    clean = _fitting_values(form, answer)
    if not clean:
        return current
    row = await cases.apply(
        conn, cases.plan_update(current, form, clean, None),
        automations.author(automation, answer.automation_id),
        automation_depth=answer.automation_depth + 1,
        source_automation_id=answer.automation_id, causation_id=causation_id)
    log.info("response_data_written", case_id=str(answer.case_id),
             automation_id=str(answer.automation_id), source=answer.source,
             fields=sorted(clean))
    return row
