"""The audit trail of configuration: who changed what, when, from what to what.

Every change to forms, incoming webhooks, users, automations (enabling, disabling and
rotating included), accounts, tokens and settings, every replay and every dead-letter requeue
or purge writes one row, in the transaction that makes the change, so there is no change
without its row and no row without its change. Secrets never reach the row: passwords,
tokens and signing secrets are masked in both the before and the after, wherever they sit.
"""

from typing import Any

from services.casestore.actors import Actor
from services.casestore.repo import Conn
from services.casestore.repo import audit as audit_rows

MASK = "***"
# Keys whose values are secrets wherever they appear.
SECRET_KEYS = frozenset({"password", "password_hash", "secret", "previous_secret", "token",
                         "client_secret", "api_key", "signing_secret", "auth_key"})
# Inside an `auth` object every value is a secret but these.
AUTH_PLAIN = frozenset({"type", "username", "header", "name", "token_url", "client_id",
                        "scope"})


def masked(value: Any, *, in_auth: bool = False) -> Any:
    """`value` with every secret replaced by MASK."""
    if isinstance(value, dict):
        return {k: MASK if _secret(k, v, in_auth) else masked(v, in_auth=k == "auth")
                for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def _secret(key: str, value: Any, in_auth: bool) -> bool:
    if value is None or isinstance(value, dict | list):
        return False
    return key in SECRET_KEYS or (in_auth and key not in AUTH_PLAIN)


def changed_paths(before: Any, after: Any, path: str = "") -> list[str]:
    """Dotted paths that differ between the two (a list's items by index)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [p for key in sorted(before.keys() | after.keys())
                for p in changed_paths(before.get(key), after.get(key), _join(path, key))]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [p for i, (b, a) in enumerate(zip(before, after, strict=True))
                for p in changed_paths(b, a, _join(path, str(i)))]
    return [] if before == after else [path or "."]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


async def record(conn: Conn, actor: Actor, action: str, target_type: str, target_id: str, *,
                 before: Any = None, after: Any = None) -> None:
    """One row for one change, in the caller's transaction."""
    # The paths come from the values themselves: a new password shows as changed, masked.
    diff = {"before": masked(before), "after": masked(after),
            "changed": changed_paths(before, after)}
    await audit_rows.insert_entry(conn, actor.name, actor.via, action, target_type,
                                  str(target_id), diff)
