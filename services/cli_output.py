"""How `casewire` commands print: rich tables, and a sentence when there is nothing to show."""

import sys
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


def _cell(value: object) -> Text:
    """As plain text: a value's brackets are not rich markup."""
    if value is None:
        return Text("-")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    return Text(str(value))


def say(text: str) -> None:
    console().print(text, markup=False)
