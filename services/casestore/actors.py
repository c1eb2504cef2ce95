"""Who is asking, and what their role lets them do.

An actor is an account (signed in to the console, or calling the API with one of its tokens),
the bootstrap admin (CASEWIRE_ADMIN_TOKEN, so that `make run` and a fresh install work before
any account exists), or the system itself (the delivery engine disabling an automation). Roles
rank viewer < editor < admin: a viewer reads everything but secrets, an editor also changes
forms, webhooks, users, automations and cases and replays deliveries, an admin also manages
accounts, tokens and settings.
"""

from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["viewer", "editor", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
BOOTSTRAP = "admin-token"
SYSTEM = "system"
# Names no account may take: the audit log tells these actors apart by name.
RESERVED = frozenset({BOOTSTRAP, SYSTEM})


@dataclass(frozen=True, slots=True)
class Actor:
    name: str  # an account's username, BOOTSTRAP or SYSTEM
    role: Role
    via: str  # how it came: "api token cw_ab12…", "admin token", "console", or the system's why

    def may(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def sees_secrets(self) -> bool:
        return self.may("editor")

    def on_behalf(self, note: str) -> "Actor":
        """The same actor, noting what it acted through (the CLI says so)."""
        return Actor(self.name, self.role, f"{self.via} ({note})") if note else self


def role_of(value: str) -> Role:
    """A role read back from the database (its CHECK allows only these)."""
    for role in ROLES:
        if role == value:
            return role
    raise ValueError(f"unknown role {value!r}")


def bootstrap_admin() -> Actor:
    return Actor(BOOTSTRAP, "admin", "admin token")


def system(reason: str) -> Actor:
    return Actor(SYSTEM, "admin", reason)
