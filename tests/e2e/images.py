"""Images built the way users build them, on a machine with no registry: the project's own
Dockerfile, built with buildah, on a Debian bookworm Python base made with debootstrap (the
Dockerfile's `BASE` argument; users keep its default, python:3.11-slim).

The base is made once into the cache (`~/.cache/stateful-guard/images`); the webhook's image
is built from the checkout each time it is asked for. Needs root, debootstrap and buildah
(`.ci/run` installs them with apt-get) and the Debian mirror apt uses.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.e2e.controlplane import CACHE, KUBERNETES, say
from tests.support import ROOT

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE = "localhost/stateful-guard-base:bookworm-python3"
WEBHOOK = "localhost/stateful-guard:dev"
# For the node (tests/e2e/node.py): the sandbox image, and busybox under the name the
# server-id init container uses by default (policies/config.py), which the seed systems'
# stand-in containers use too.
PAUSE = "registry.k8s.io/pause:3.10"
BUSYBOX = "docker.io/library/busybox:1.37"
STORE = CACHE / "images"
TOOLS = ("buildah", "debootstrap")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def buildah_command(*args: str) -> list[str]:
    """buildah on our own storage in the cache (vfs: no overlay mounts to clean up)."""
    return [
        "buildah",
        "--root",
        str(STORE / "storage"),
        "--runroot",
        str(STORE / "run"),
        "--storage-driver",
        "vfs",
        *args,
    ]


def buildah(*args: str, capture: bool = False) -> str:
    """buildah's own output goes to stderr: stdout is for what the caller prints."""
    done = subprocess.run(
        buildah_command(*args),
        check=True,
        stdout=subprocess.PIPE if capture else sys.stderr,
        stderr=None,
        text=True,
    )
    return done.stdout.strip() if capture else ""


def _has(image: str) -> bool:
    found = subprocess.run(
        buildah_command("inspect", "--type", "image", image), capture_output=True, check=False
    )
    return found.returncode == 0


def base_image() -> str:
    """Debian bookworm with python3 and its venv module, as a local image (made once)."""
    if _has(BASE):
        return BASE
    rootfs = STORE / "bookworm-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    say(f"making {BASE} with debootstrap ({MIRROR})")
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv",
            SUITE,
            str(rootfs),
            MIRROR,
        ],
        check=True,
        capture_output=True,
    )
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    container = buildah("from", "scratch", capture=True)
    buildah("copy", container, str(rootfs), "/")
    buildah("config", "--cmd", '["python3"]', container)
    buildah("commit", "-q", container, BASE)
    buildah("rm", container)
    shutil.rmtree(rootfs, ignore_errors=True)
    return BASE


@functools.cache
def webhook_image() -> str:
    """The webhook's image from the checkout's Dockerfile, on the local base. The build's
    `pip install` reaches the package registry with the host's CA certificates."""
    base = base_image()
    say(f"building {WEBHOOK} from {ROOT / 'Dockerfile'}")
    buildah(
        "bud",
        "--pull-never",
        "--isolation",
        "chroot",
        "--volume",
        "/etc/ssl/certs:/etc/ssl/certs:ro",
        "--build-arg",
        f"BASE={base}",
        "-t",
        WEBHOOK,
        str(ROOT),
    )
    return WEBHOOK


def _scratch_image(name: str, rootfs: Path, *config: str) -> None:
    container = buildah("from", "scratch", capture=True)
    buildah("copy", container, str(rootfs), "/")
    if config:
        buildah("config", *config, container)
    buildah("commit", "-q", container, name)
    buildah("rm", container)


def pause_image() -> str:
    """The sandbox image, from the pause.c of the same k8s.io/kubernetes module, static."""
    if _has(PAUSE):
        return PAUSE
    found = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    source = Path(json.loads(found.stdout)["Dir"]) / "build" / "pause" / "linux" / "pause.c"
    with tempfile.TemporaryDirectory() as work:
        rootfs = Path(work)
        binary = rootfs / "pause"
        subprocess.run(
            ["gcc", "-Os", "-static", "-DVERSION=3.10-e2e", "-o", str(binary), str(source)],
            check=True,
        )
        subprocess.run(["strip", str(binary)], check=True)
        _scratch_image(PAUSE, rootfs, "--entrypoint", '["/pause"]')
    return PAUSE


def busybox_image() -> str:
    """busybox from Debian's busybox-static, every applet linked, root and nobody users."""
    if _has(BUSYBOX):
        return BUSYBOX
    with tempfile.TemporaryDirectory() as work:
        rootfs = Path(work)
        for sub in ("bin", "etc", "tmp", "root", "var", "proc", "sys", "dev"):
            (rootfs / sub).mkdir()
        (rootfs / "tmp").chmod(0o1777)
        busybox = shutil.which("busybox")
        assert busybox, "busybox-static is not installed"
        shutil.copy(busybox, rootfs / "bin" / "busybox")
        applets = subprocess.run(
            [busybox, "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (rootfs / "bin" / applet).symlink_to("busybox")
        (rootfs / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        )
        (rootfs / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")
        _scratch_image(BUSYBOX, rootfs, "--cmd", '["sh"]', "--env", "PATH=/bin")
    return BUSYBOX


def archive(image: str) -> Path:
    """The image as a docker-archive tar, for `ctr images import` on the node."""
    path = STORE / "archives" / (image.replace("/", "_").replace(":", "_") + ".tar")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    buildah("push", "-q", image, f"docker-archive:{path}:{image}")
    return path


def node_archives() -> list[Path]:
    """What the node's containerd is given: pause, busybox, and the webhook built now."""
    return [archive(pause_image()), archive(busybox_image()), archive(webhook_image())]
