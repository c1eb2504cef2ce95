"""What `casewire run` leaves for the other commands: .casewire/ with the dev secrets it
generated and the settings it ran with (env); every other command reads them there (the
environment still wins), so a command looks at the stack `make run` started."""

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.settings import Settings

STATE_DIR = Path(".casewire")
ENV_FILE = STATE_DIR / "env"
TOKEN_FILE = STATE_DIR / "admin-token"


def dev_secret(configured: str, name: str,
                make: Callable[[], str] = lambda: secrets.token_urlsafe(24)) -> str:
    """The configured secret, or one generated once and kept in .casewire/ for dev runs."""
    if configured:
        return configured
    path = STATE_DIR / name
    if not path.exists():
        STATE_DIR.mkdir(exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _env_value(value: Any) -> str:
    """As the settings read it back: lists as JSON, in double quotes (dotenv syntax)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text, ensure_ascii=False)


def write_env(settings: Settings) -> None:
    """The settings of this run, for every other `casewire` command (secrets too: mode 0600)."""
    STATE_DIR.mkdir(exist_ok=True)
    lines = [f"CASEWIRE_{name.upper()}={_env_value(value)}"
             for name, value in settings.model_dump(mode="json").items()]
    ENV_FILE.touch(mode=0o600)
    ENV_FILE.chmod(0o600)
    ENV_FILE.write_text("# written by `casewire run`; read by every other casewire command\n"
                        + "\n".join(lines) + "\n")


def settings_for(command: str) -> Settings:
    """`run` takes the environment alone; the others the last run's settings beneath it."""
    if command != "run" and ENV_FILE.exists():
        return Settings(_env_file=ENV_FILE)
    return Settings()
