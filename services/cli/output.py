"""How `casewire` commands print: rich tables, and a sentence when there is nothing to show.

Whatever a command prints may come from a message or a request (a dead letter's id, type and
body, a receiver's answer): control characters in it are printed escaped (`\x1b`), never raw,
so a crafted value cannot retitle, clear or rewrite the operator's terminal.
"""

import sys
import unicodedata
from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Piped output (a script, `grep`, a test) keeps each row on one line, however long.
WIDTH_WHEN_PIPED = 400


def console() -> Console:
    return Console(width=None if sys.stdout.isatty() else WIDTH_WHEN_PIPED, highlight=False,
                   soft_wrap=False)


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str,
          title: str | None = None) -> None:
    """Print the rows under their column names, or `empty` when there is none."""
    shown = [[_cell(value) for value in row] for row in rows]
    out = console()
    if not shown:
        out.print(empty)
        return
    grid = Table(*columns, box=box.SIMPLE_HEAD, title=title, title_justify="left",
                 pad_edge=False, show_edge=False)
    for row in shown:
        grid.add_row(*row)
    out.print(grid)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep: str = "") -> str:
    """`text` with every control or format character (escape sequences, carriage returns,
    bidirectional overrides) written as its escape, except those in `keep`."""
    return "".join(_escaped(c) if c not in keep and unicodedata.category(c) in ("Cc", "Cf")
                   else c for c in text)


def _cell(value: object) -> Text:
    """As plain text: a value's brackets are not rich markup, its control characters are
    escaped (a row stays one line)."""
    if value is None:
        return Text("-")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    return Text(printable(str(value)))


def say(text: str) -> None:
    """One message, on as many lines as it has (other control characters escaped)."""
    print(printable(text, keep="\n"), flush=True)
