"""deploy/install.sh refuses what it cannot install before it touches anything (the real
install, upgrade and uninstall are e2e tests on a real node: tests/e2e/test_node_install.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "deploy" / "install.sh"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--image", "stateful-guard"], "needs a tag (NAME:TAG) or a digest"),
        (["--image", "registry:5000/stateful-guard"], "needs a tag (NAME:TAG) or a digest"),
        (["--bogus"], "unknown option --bogus"),
        (["nowhere"], "nowhere is neither namespaced, cluster-wide nor a directory"),
    ],
)
def test_bad_arguments_exit_2_before_any_change(args: list[str], says: str, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    done = subprocess.run(
        [str(SCRIPT), "--certs", str(certs), *args, *([] if "nowhere" in args else ["namespaced"])],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "KUBECTL": "/nonexistent/kubectl"},
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert not certs.exists(), "no certificates made"


def test_help_describes_the_steps() -> None:
    done = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "deploy/install.sh [--image NAME:TAG]" in done.stdout
    assert "caBundle" in done.stdout
