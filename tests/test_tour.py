"""The README's five-minute tour, replayed: each `curl` block in the README is run against a
real server started as the tour says, and its output must equal the JSON block after it."""

from __future__ import annotations

import itertools
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ROOT, stateful_guard
from tests.test_cli import free_port

BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def tour_steps() -> list[tuple[str, str]]:
    """(command, expected output) for every curl block followed by a json block."""
    blocks = BLOCK.findall((ROOT / "README.md").read_text())
    steps = []
    for (lang, body), (next_lang, expected) in itertools.pairwise(blocks):
        if lang == "sh" and body.lstrip().startswith("curl") and next_lang == "json":
            steps.append((body.strip(), expected.strip()))
    return steps


def test_readme_has_a_tour() -> None:
    assert len(tour_steps()) >= 4


@pytest.mark.skipif(shutil.which("curl") is None, reason="the tour uses curl")
def test_tour(tmp_path: Path) -> None:
    port = free_port()
    certs = tmp_path / "certs"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook.cli",
            "serve",
            "--ops-listen",
            "127.0.0.1:0",
            "--objects",
            "examples/cluster.yaml",
            "--listen",
            f"127.0.0.1:{port}",
            "--cert-dir",
            str(certs),
        ],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            if (certs / "ca.crt").exists() and subprocess.run(
                [
                    "curl",
                    "-sf",
                    "--cacert",
                    str(certs / "ca.crt"),
                    f"https://localhost:{port}/healthz",
                ],
                capture_output=True,
                check=False,
            ).returncode == 0:
                break
            time.sleep(0.1)
        for command, expected in tour_steps():
            command = command.replace(".stateful-guard/certs", str(certs)).replace(
                "localhost:8443", f"localhost:{port}"
            )
            run = subprocess.run(
                ["bash", "-c", command],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            assert json.loads(run.stdout) == json.loads(expected), command
    finally:
        server.terminate()
        server.wait(timeout=30)


def audit_steps() -> list[tuple[str, str]]:
    """(command, output) for every README `stateful-guard audit` block followed by text."""
    blocks = BLOCK.findall((ROOT / "README.md").read_text())
    return [
        (body.strip(), expected)
        for (lang, body), (next_lang, expected) in itertools.pairwise(blocks)
        if lang == "sh" and body.startswith("stateful-guard audit") and next_lang == "text"
    ]


def test_readme_audit_output_is_real() -> None:
    steps = audit_steps()
    assert steps, "the README shows an audit"
    for command, expected in steps:
        args = shlex.split(command)[1:]
        run = stateful_guard(*args, columns=100)  # the width the README shows
        assert run.returncode in (0, 1), run.stderr
        assert max(map(len, run.stdout.splitlines())) <= 100, "fits the terminal"
        assert run.stdout == expected, command
