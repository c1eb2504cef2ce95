"""The README is a newcomer's first ten minutes: its quick-start sample is what `casewire run`
prints, and it stays short, with the reference and the dated history elsewhere.

Its shell examples (the tour) run with every page's in tests/test_docs_examples.py.
"""

import re

from services.cli.run import banner
from shared.settings import Settings
from tests.docs_examples import ROOT, blocks

README = ROOT / "README.md"


def test_the_quick_start_banner_is_what_casewire_run_prints() -> None:
    [sample] = [b.text for b in blocks("README.md") if b.text.startswith("Casewire is running")]
    token = re.search(r"Admin token:\s+(\S+)", sample)
    url = re.search(r"incoming webhook URL:\s+(\S+)", sample)
    assert token is not None
    assert url is not None
    printed = banner(Settings(), token.group(1), url.group(1))
    assert sample == printed.strip("\n")


def test_the_readme_is_short_and_has_no_dated_section() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert not [h for h in headings if re.search(r"\b20\d\d-\d\d-\d\d\b", h)]
    # The two commands of the quick start stay the whole set-up.
    [quick_start] = [b.text for b in blocks("README.md") if b.text.startswith("make run")]
    assert [line.split()[:2] for line in quick_start.splitlines()] == [
        ["make", "run"], ["make", "test"]]
