"""The `casewire` command: migrate the database, run the whole system, inspect and operate it.

`casewire run` writes the settings it ran with to .casewire/env; every other command reads them
there (the environment still wins), so a command looks at the stack `make run` started.
"""

from services.cli.main import main

__all__ = ["main"]
