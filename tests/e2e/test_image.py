"""The image users install, built from the project's Dockerfile (buildah, a local Debian
bookworm base through the `BASE` argument: no registry is reachable here), and run: it holds
every module, runs as the non-root user the Deployment expects, and serves."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs import files
from tests.e2e import images
from tests.e2e.cluster import require, wait_for
from tests.e2e.controlplane import free_port


@pytest.fixture(scope="module")
def image() -> str:
    require(images.missing_tools() + ([] if os.geteuid() == 0 else ["root"]), "building images")
    return images.webhook_image()


def test_the_image_runs_as_the_deployment_expects(image: str) -> None:
    config = json.loads(images.buildah("inspect", "--type", "image", image, capture=True))
    oci = config["OCIv1"]["config"]
    assert oci["User"] == "65532:65532"
    assert oci["Entrypoint"] == ["stateful-guard"]
    assert oci["Cmd"] == ["serve", "--listen=0.0.0.0:8443"]


@pytest.fixture
def serving(image: str, tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """`stateful-guard serve` inside a working container of the image (host network), with a
    certificate mounted as the Deployment mounts its Secret."""
    certs = files.issue(tmp_path / "tls", service="stateful-guard", namespace="stateful-guard")
    os.chmod(certs.key, 0o644)  # the image's user, 65532, reads it, as from a Secret volume
    os.chmod(certs.directory, 0o755)
    port, ops = free_port(), free_port()
    container = images.buildah("from", image, capture=True)
    process = subprocess.Popen(
        images.buildah_command(
            "run",
            "--isolation",
            "chroot",
            "--volume",
            f"{certs.directory}:/etc/stateful-guard/tls:ro",
            container,
            "--",
            "stateful-guard",
            "serve",
            f"--listen=127.0.0.1:{port}",
            f"--ops-listen=127.0.0.1:{ops}",
            "--cert-dir=/etc/stateful-guard/tls",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port, ops, certs.ca_cert
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        images.buildah("rm", container)


def test_the_image_serves(serving: tuple[int, int, Path]) -> None:
    port, ops, ca = serving
    context = ssl.create_default_context(cafile=str(ca))

    def ready() -> bool:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context) as r:
            return bool(r.status == 200)

    wait_for(ready, timeout=60, what="the image's webhook to serve")
    with urllib.request.urlopen(f"http://127.0.0.1:{ops}/metrics", timeout=5) as response:
        assert b"stateful_guard_" in response.read()
