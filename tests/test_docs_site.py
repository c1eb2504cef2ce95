"""The documentation site builds with `mkdocs build --strict` (a broken link or anchor, or a page
left out of the navigation, fails), the links into it from outside resolve, and it names every
setting."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.docs_examples import DOCS, ROOT

# Markdown files outside docs/ that link into it (the site cannot check those links).
OUTSIDE = ("README.md", "deploy/README.md", "bench/results/README.md",
           "bench/results/history.md")
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=110, check=False)
    assert built.returncode == 0, built.stderr
    return out


def test_the_site_builds_strictly(site: Path) -> None:
    pages = {p.stem for p in DOCS.glob("*.md")}
    built = {p.parent.name or "index" for p in site.rglob("index.html")
             if p.parent == site or p.parent.parent == site}
    assert pages <= built | {"index"}


def _anchors(site: Path, page: str) -> set[str]:
    html = site / ("index.html" if page == "index" else f"{page}/index.html")
    return set(re.findall(r'id="([^"]+)"', html.read_text()))


@pytest.mark.parametrize("source", OUTSIDE)
def test_links_from_outside_the_site_resolve(source: str, site: Path) -> None:
    base = (ROOT / source).parent
    for target in LINK.findall((ROOT / source).read_text()):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (base / path).resolve() if path else ROOT / source
        assert resolved.exists(), f"{source}: {target}"
        if anchor and resolved.parent == DOCS.resolve() and resolved.suffix == ".md":
            assert anchor in _anchors(site, resolved.stem), f"{source}: {target}"


def test_configuration_names_every_setting() -> None:
    text = (DOCS / "configuration.md").read_text()
    documented: set[str] = set()
    for name in re.findall(r"`(CASEWIRE_[A-Z_{},]+)`", text):
        grouped = re.fullmatch(r"CASEWIRE_\{(.+)\}_(.+)", name)
        documented |= ({f"CASEWIRE_{part}_{grouped.group(2)}" for part in
                        grouped.group(1).split(",")} if grouped else {name})
    assert {f"CASEWIRE_{name.upper()}" for name in Settings.model_fields} <= documented
