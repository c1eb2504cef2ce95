"""The Casewire image: built with buildah from deploy/Dockerfile, and run as the manifests run it.

`python -m bench.topology.image` (what `make image` runs) builds `localhost/casewire:dev` with
`buildah bud --isolation chroot` (no daemon; podman's runtimes cannot set rlimits on these
hosts). The base is `python:3.11-slim-bookworm` when a registry serves it; otherwise a Debian
bookworm root made once by mmdebstrap from this host's own apt sources and kept as
`localhost/casewire-base:bookworm`. pip inside the build gets this host's index settings as
build args (`pip config list`): an index on local disk is mounted read-only at its own path.

`ImageRoot` runs a command from the image as a pod would: its user (10001), its environment and
working directory, a read-only root with a tmpfs on /tmp, and the host's network. Each command
is `unshare --mount` + `chroot` of the image's mounted root, which is what `buildah run
--isolation chroot` does, minus buildah's writable root: its process id is the service's own,
so `kill -9` reaches the service and nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/casewire:dev"
REGISTRY_BASE = "docker.io/library/python:3.11-slim-bookworm"
DEBIAN_BASE = "localhost/casewire-base:bookworm"
# What the Dockerfile needs from its base, as python:3.11-slim-bookworm has it: python with venv,
# CA certificates, useradd, and the time zone database (forms name IANA zones).
DEBIAN_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates,passwd,tzdata"
PULL_SECONDS = 60
# pip settings that say where packages come from, passed to the build as PIP_* build args.
PIP_KEYS = ("index-url", "extra-index-url", "find-links", "trusted-host", "cert",
            "default-timeout")


def buildah(*args: str, check: bool = True, timeout: float = 1800) -> str:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True,  # noqa: S603,S607
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args[:3])} failed: {result.stderr[-3000:]}")
    return result.stdout.strip()


def exists(image: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", image],  # noqa: S603,S607
                          capture_output=True, check=False).returncode == 0


def pull_registry_base() -> bool:
    """True if the registry's Python image could be pulled (or is here already)."""
    if exists(REGISTRY_BASE):
        return True
    try:
        buildah("pull", "--quiet", REGISTRY_BASE, timeout=PULL_SECONDS)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"image: {REGISTRY_BASE} cannot be pulled ({str(exc)[-200:].strip()}); "
              "using a Debian base made by mmdebstrap", file=sys.stderr)
        return False
    return True


def host_apt_sources() -> list[str]:
    """This host's apt source files, so the base comes from the mirror the host already uses."""
    listed = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    return [str(p) for p in listed if p.suffix in (".list", ".sources") and p.is_file()
            and any(line.strip() and not line.lstrip().startswith("#")
                    for line in p.read_text().splitlines())]


def debian_base() -> str:
    """`localhost/casewire-base:bookworm`, made once (about 30 s) and kept by buildah."""
    if exists(DEBIAN_BASE):
        return DEBIAN_BASE
    with tempfile.TemporaryDirectory(prefix="casewire-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        subprocess.run(["mmdebstrap", "--quiet", "--variant=apt",  # noqa: S603,S607
                        f"--include={DEBIAN_PACKAGES}", "bookworm", str(rootfs),
                        *host_apt_sources()], check=True, timeout=900)
        container = buildah("from", "scratch")
        try:
            buildah("add", container, str(rootfs), "/")
            buildah("config", "--cmd", "python3", container)
            buildah("commit", "--quiet", "--rm", container, DEBIAN_BASE)
        except RuntimeError:
            buildah("rm", container, check=False)
            raise
    return DEBIAN_BASE


def pip_settings() -> dict[str, str]:
    """This host's pip settings (files and PIP_* variables, as pip itself merges them)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True, check=False).stdout
    found: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.rpartition(".")[2]
        if name in PIP_KEYS:
            found[name] = shlex.split(value)[0] if value else ""
    return found


def local_paths(value: str) -> list[str]:
    """The directories or files on this disk that a pip setting names (file:// or a path)."""
    paths = []
    for item in value.split():
        path = urlsplit(item).path if item.startswith("file://") else item
        # A local PEP 503 index links from simple/ to files beside it: the whole tree.
        path = str(Path(path).parent) if Path(path).name == "simple" else path.rstrip("/")
        if path.startswith("/") and os.path.exists(path):
            paths.append(path)
    return paths


def pip_build_args() -> list[str]:
    args: list[str] = []
    for key, value in pip_settings().items():
        args += ["--build-arg", f"PIP_{key.upper().replace('-', '_')}={value}"]
        for path in local_paths(value):
            args += ["--volume", f"{path}:{path}:ro"]
    return args


def build(tag: str = IMAGE) -> str:
    """Build the image (layers cached: a code-only change rebuilds only the last layers)."""
    base = REGISTRY_BASE if pull_registry_base() else debian_base()
    buildah("bud", "--quiet", "--isolation", "chroot", "--network", "host", "--layers",
            "--file", str(ROOT / "deploy/Dockerfile"),
            "--ignorefile", str(ROOT / "deploy/Dockerfile.dockerignore"),
            "--build-arg", f"PYTHON_IMAGE={base}", *pip_build_args(),
            "--tag", tag, str(ROOT))
    return tag


@dataclass(frozen=True)
class ImageConfig:
    user: str
    env: dict[str, str]
    workdir: str


def image_config(image: str) -> ImageConfig:
    config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    return ImageConfig(config.get("User") or "0:0", env, config.get("WorkingDir") or "/")


class ImageRoot:
    """The image's root filesystem mounted once; every command runs in it read-only."""

    def __init__(self, image: str = IMAGE) -> None:
        self.image = image
        self.config = image_config(image)
        self._container = buildah("from", "--pull-never", image)
        self.path = buildah("mount", self._container)

    def argv(self, command: list[str], env: dict[str, str]) -> list[str]:
        """`command` as the pod runs it; the returned argv execs into it (same process id)."""
        variables = {**self.config.env, **env}
        user = self.config.user if ":" in self.config.user else f"{self.config.user}:"
        script = ("set -e; r=\"$1\"; shift; mount --bind \"$r\" \"$r\"; "
                  "mount -o remount,bind,ro \"$r\"; "
                  "mount -t tmpfs -o size=64m,mode=1777 tmpfs \"$r/tmp\"; "
                  "mount --rbind /dev \"$r/dev\"; mount -t proc proc \"$r/proc\"; "
                  f"cd \"$r\"; exec chroot --userspec={user} \"$r\" \"$@\"")
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                self.path, "/usr/bin/env", "-i", f"--chdir={self.config.workdir}",
                *(f"{k}={v}" for k, v in variables.items()), *command]

    def run(self, command: list[str], env: dict[str, str], timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(command, env), capture_output=True,  # noqa: S603
                              text=True, timeout=timeout, check=False)

    def close(self) -> None:
        buildah("umount", self._container, check=False)
        buildah("rm", self._container, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default=IMAGE)
    args = parser.parse_args()
    for tool in ("buildah", "mmdebstrap"):
        if shutil.which(tool) is None:
            sys.exit(f"make image needs {tool}: `apt-get install -y buildah mmdebstrap`")
    started = time.monotonic()
    build(args.tag)
    print(f"image: {args.tag} built in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
