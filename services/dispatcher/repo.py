"""The dispatcher's read-only queries; casestore stays the only writer."""

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.automations import AutomationDefinition
from shared.cases import CASE_COLUMNS, StoredCase
from shared.crypto import SecretBox
from shared.forms import FORM_COLUMNS, FormDefinition
from shared.outgoing_auth import with_secret
from shared.schedule import FAILING_REASON_PREFIX, GONE_REASON

AUTOMATION_COLUMNS = ("id, form_id, definition, enabled, secret, previous_secret,"
                      " previous_secret_until")


@dataclass(frozen=True)
class Automation:
    id: uuid.UUID
    form_id: str
    enabled: bool
    secret: str
    definition: AutomationDefinition
    # The secret a rotation replaced, still signing beside the new one until then.
    previous_secret: str | None = None
    previous_secret_until: datetime | None = None

    def signing_secrets(self, now: datetime) -> list[str]:
        if (self.previous_secret is not None and self.previous_secret_until is not None
                and now < self.previous_secret_until):
            return [self.secret, self.previous_secret]
        return [self.secret]


@dataclass(frozen=True)
class FormRules:
    """A form and its enabled automations (in creation order) at one revision."""

    form: FormDefinition
    automations: list[Automation]
    revision: int  # the form's, read once: pydantic private attributes are slow to read

    def automation(self, automation_id: uuid.UUID) -> Automation | None:
        return next((a for a in self.automations if a.id == automation_id), None)


class Reader:
    """Reads forms, automations (secrets decrypted) and cases."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox):
        self.pool = pool
        self._box = box

    def _automation(self, row: asyncpg.Record) -> Automation:
        """Secrets decrypted: the sender signs with the secret and sends the password."""
        previous = row["previous_secret"]
        return Automation(id=row["id"], form_id=row["form_id"], enabled=row["enabled"],
                          secret=self._box.decrypt(row["secret"]),
                          definition=AutomationDefinition.model_validate(
                              with_secret(row["definition"], self._box.decrypt)),
                          previous_secret=self._box.decrypt(previous) if previous else None,
                          previous_secret_until=row["previous_secret_until"])

    async def form_rules(self, form_id: str) -> FormRules | None:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                 readonly=True):
            form_row = await conn.fetchrow(f"SELECT {FORM_COLUMNS} FROM forms WHERE id = $1",
                                           form_id)
            if form_row is None:
                return None
            rows = await conn.fetch(f"SELECT {AUTOMATION_COLUMNS} FROM automations"
                                    " WHERE form_id = $1 AND enabled ORDER BY created_at, id",
                                    form_id)
        form = FormDefinition.from_record(form_row)
        return FormRules(form, [self._automation(r) for r in rows], form.revision)

    async def automation(self, automation_id: uuid.UUID) -> Automation | None:
        row = await self.pool.fetchrow(
            f"SELECT {AUTOMATION_COLUMNS} FROM automations WHERE id = $1", automation_id)
        return self._automation(row) if row else None

    async def form(self, form_id: str) -> FormDefinition | None:
        row = await self.pool.fetchrow(f"SELECT {FORM_COLUMNS} FROM forms WHERE id = $1", form_id)
        return FormDefinition.from_record(row) if row else None

    async def case(self, case_id: uuid.UUID) -> StoredCase | None:
        row = await self.pool.fetchrow(f"SELECT {CASE_COLUMNS} FROM cases WHERE id = $1",
                                       case_id)
        return StoredCase.from_record(row) if row else None


# What /metrics reports about the delivery engine (services/dispatcher/metrics.py), one
# statement each; the backlog is counted on the deliveries_state index, not the whole log.
WAITING_STATES = ("pending", "sending", "retrying")


async def waiting_deliveries(pool: asyncpg.Pool) -> dict[str, int]:
    """Deliveries on their way, by state (every waiting state, 0 if none)."""
    rows = await pool.fetch(
        "SELECT state, count(*) AS n FROM deliveries"
        " WHERE state = ANY($1::text[]) GROUP BY state", list(WAITING_STATES))
    counted = {r["state"]: int(r["n"]) for r in rows}
    return {state: counted.get(state, 0) for state in WAITING_STATES}


async def oldest_due(pool: asyncpg.Pool) -> dict[uuid.UUID, float]:
    """Per automation with deliveries due and not handed out, seconds the oldest has waited
    (through the index of waiting deliveries)."""
    rows = await pool.fetch(
        "SELECT automation_id, extract(epoch FROM now() - min(next_attempt_at)) AS waited"
        " FROM deliveries WHERE state IN ('pending', 'retrying') AND next_attempt_at <= now()"
        " GROUP BY automation_id")
    return {r["automation_id"]: float(r["waited"]) for r in rows}


async def paused_endpoints(pool: asyncpg.Pool) -> int:
    """Enabled automations whose circuit is open or half open."""
    return int(await pool.fetchval(
        "SELECT count(*) FROM endpoint_health h JOIN automations a ON a.id = h.automation_id"
        " WHERE a.enabled AND h.state IN ('open', 'half_open')"))


async def engine_disabled_automations(pool: asyncpg.Pool) -> dict[str, int]:
    """Automations the delivery engine disabled: `gone` (a 410) and `failing` (for days)."""
    row = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE disabled_reason = $1) AS gone,"
        " count(*) FILTER (WHERE starts_with(disabled_reason, $2)) AS failing"
        " FROM automations WHERE NOT enabled AND disabled_reason IS NOT NULL",
        GONE_REASON, FAILING_REASON_PREFIX)
    assert row is not None
    return {"gone": int(row["gone"]), "failing": int(row["failing"])}
