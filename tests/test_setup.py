"""Set-up: `make run` installs the runtime only; the image installs from a lock with hashes."""

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
LOCKED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+", re.MULTILINE)


def planned(target: str, tmp_path: Path) -> str:
    """What `make TARGET` would run on a machine without a virtualenv (nothing is run)."""
    result = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"],
                            cwd=ROOT, capture_output=True, text=True, check=True, timeout=30)
    return result.stdout


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_make_run_installs_the_runtime_dependencies_only(tmp_path: Path) -> None:
    run = planned("run", tmp_path)
    assert "pip install --quiet -e ." in run
    assert "[dev]" not in run
    assert "[dev]" in planned("test", tmp_path)


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {normalized(name) for name in LOCKED.findall(lock)}
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {normalized(re.split(r"[<>=;\[ ]", spec, maxsplit=1)[0]) for spec in wanted}
    assert names <= pinned
    for entry in lock.split("\n\n"):
        for requirement in LOCKED.findall(entry):
            assert "--hash=sha256:" in entry, requirement
    assert "--hash=sha256:" in (ROOT / "requirements-build.lock").read_text()


def test_the_image_installs_from_the_locks_with_hashes_required() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r requirements.lock" in dockerfile
    assert "--require-hashes --no-deps -r requirements-build.lock" in dockerfile
    assert "--no-build-isolation" in dockerfile  # nothing unpinned fetched to build the wheel
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text()
    assert "!requirements.lock" in ignore
    assert "!requirements-build.lock" in ignore
