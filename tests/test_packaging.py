"""What `pip install .` (the README's first command, and the Dockerfile) installs: every module
of the three packages, subpackages included. An editable install, as the tests use, would not
notice one missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support import ROOT

PACKAGES = ("webhook", "policies", "certs")


def test_the_wheel_holds_every_module(tmp_path: Path) -> None:
    # from a clean copy: a build/ directory left in the checkout would fill in what the
    # configuration leaves out
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
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
