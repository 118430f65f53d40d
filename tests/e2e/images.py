"""Images built the way users build them, on a machine with no registry: the project's own
Dockerfile, built with buildah, on a Debian bookworm Python base made with debootstrap (the
Dockerfile's `BASE` argument; users keep its default, python:3.11-slim).

The base is made once into the cache (`~/.cache/stateful-guard/images`); the webhook's image
is built from the checkout each time it is asked for. Needs root, debootstrap and buildah
(`.ci/run` installs them with apt-get) and the Debian mirror apt uses.
"""

from __future__ import annotations

import shutil
import subprocess

from tests.e2e.controlplane import CACHE, say
from tests.support import ROOT

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE = "localhost/stateful-guard-base:bookworm-python3"
WEBHOOK = "localhost/stateful-guard:dev"
STORE = CACHE / "images"


def missing_tools() -> list[str]:
    return [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]


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
    done = subprocess.run(buildah_command(*args), check=True, capture_output=capture, text=True)
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
