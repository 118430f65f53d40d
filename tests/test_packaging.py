"""What `pip install .` (the README's first command, and the Dockerfile) installs: every module
of the three packages, subpackages included. An editable install, as the tests use, would not
notice one missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from tests.support import ROOT

PACKAGES = ("webhook", "policies", "certs")


def test_the_wheel_holds_every_module(tmp_path: Path) -> None:
    # from a clean copy: a build/ directory left in the checkout would fill in what the
    # configuration leaves out
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("stateful_guard-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    assert sources - packed == set()
    assert not any(name.startswith(("tests/", "bench/")) for name in packed)
    assert any(name.endswith("licenses/LICENSE") for name in packed), "the license ships"


def pins(lock: Path) -> dict[str, str]:
    """name -> version of each `name==version \\` line, each followed by its hashes."""
    found = {}
    lines = lock.read_text().splitlines()
    for n, line in enumerate(lines):
        if "==" in line and not line.startswith((" ", "#")):
            name, _, version = line.split(" ")[0].partition("==")
            assert lines[n + 1].strip().startswith("--hash=sha256:"), f"{name} has no hash"
            found[name.lower().replace("_", "-")] = version
    return found


def test_the_lock_files_pin_every_dependency_with_hashes() -> None:
    """requirements.lock (the image, the first README command) and requirements-test.lock (CI,
    the test command) pin what pyproject.toml asks for, each version within its range."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        "requirements.lock": project["dependencies"],
        "requirements-test.lock": project["dependencies"]
        + project["optional-dependencies"]["test"],
    }
    for lock, requirements in wanted.items():
        pinned = pins(ROOT / lock)
        for text in requirements:
            requirement = Requirement(text)
            name = requirement.name.lower().replace("_", "-")
            assert name in pinned, f"{lock} does not pin {name}"
            assert requirement.specifier.contains(pinned[name]), f"{lock}: {name} {pinned[name]}"


def test_the_image_builds_from_pinned_parts() -> None:
    """The Dockerfile's base is pinned by digest and its dependencies come from the lock."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = next(line for line in dockerfile.splitlines() if line.startswith("ARG BASE="))
    assert "@sha256:" in base and len(base.split("@sha256:")[1]) == 64
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert "--no-deps ." in dockerfile
