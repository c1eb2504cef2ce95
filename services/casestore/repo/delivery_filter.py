"""Which deliveries a search of the delivery log means, as SQL over its indexes."""

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

StatusRange = tuple[int, int] | None  # inclusive; None: no answer (a timeout, a refusal)
WEBHOOK_ID = re.compile(r"^msg_([0-9a-f]{32})$")
STATUS_CLASS = re.compile(r"^[1-5]xx$")


def webhook_id_filter(raw: str) -> tuple[str, uuid.UUID]:
    """A `webhook-id` names its delivery: msg_ and the delivery id's 32 hex digits."""
    match = WEBHOOK_ID.match(raw)
    if match is None:
        raise ValueError("expected msg_ and 32 hex digits, as the webhook-id header carries it")
    return raw, uuid.UUID(match.group(1))


def _status(part: str) -> StatusRange:
    if part == "none":
        return None
    if STATUS_CLASS.match(part):
        return int(part[0]) * 100, int(part[0]) * 100 + 99
    if part.isascii() and part.isdigit() and 100 <= int(part) <= 599:
        return int(part), int(part)
    raise ValueError(f"'{part}' is none of: a status from 100 to 599, a class such as 5xx, "
                     "none (no answer)")


def status_filter(raw: str) -> tuple[StatusRange, ...]:
    """`401`, `5xx`, `none` (no answer), comma separated."""
    return tuple(_status(part.strip().lower()) for part in raw.split(","))


@dataclass(frozen=True)
class DeliveryFilter:
    """Which deliveries: every field given must match (`since` inclusive, `until` not).

    `statuses`: deliveries with an attempt answered with one of them (delivery_attempts'
    response-status index finds the rare ones); `webhook_id` is the receiver's `webhook-id`,
    which names its delivery (msg_ + the delivery id), so the primary key finds it.
    """

    delivery_id: uuid.UUID | None = None
    automation_id: uuid.UUID | None = None
    case_id: uuid.UUID | None = None
    states: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    webhook_id: tuple[str, uuid.UUID] | None = None
    statuses: tuple[StatusRange, ...] | None = None

    def where(self, args: list[Any]) -> str:
        """The SQL condition; its parameters are appended to `args` (numbered after them)."""
        conditions = ["true"]

        def param(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        for column, value in (("d.id", self.delivery_id), ("d.automation_id", self.automation_id),
                              ("d.case_id", self.case_id)):
            if value is not None:
                conditions.append(f"{column} = {param(value)}")
        if self.states:
            conditions.append(f"d.state = ANY({param(list(self.states))}::text[])")
        if self.since is not None:
            conditions.append(f"d.created_at >= {param(self.since)}")
        if self.until is not None:
            conditions.append(f"d.created_at < {param(self.until)}")
        if self.webhook_id is not None:
            text, delivery_id = self.webhook_id
            conditions.append(f"d.id = {param(delivery_id)} AND d.webhook_id = {param(text)}")
        if self.statuses:
            conditions.append(self._answered(param))
        return " AND ".join(conditions)

    def _answered(self, param: Any) -> str:
        assert self.statuses
        ranges = [f"da.response_status BETWEEN {param(r[0])} AND {param(r[1])}" if r is not None
                  else "da.response_status IS NULL" for r in self.statuses]
        return ("EXISTS (SELECT 1 FROM delivery_attempts da WHERE da.delivery_id = d.id"
                f" AND ({' OR '.join(ranges)}))")
