"""server-id: give each StatefulSet pod an application id derived from its ordinal.

Rule: on StatefulSet CREATE and UPDATE, a set annotated `stateful-guard.io/server-id:
mysql|zookeeper|kafka|generic` (offset: `stateful-guard.io/server-id-offset`) gets, in its
pod template, an init container that derives the pod's ordinal (the
`apps.kubernetes.io/pod-index` label through the downward API; the hostname's numeric suffix
as fallback) and writes the id where the application reads it, on a shared emptyDir that is
mounted into every app container; and the env `POD_ORDINAL` in every app container.

Why: replicated databases need a unique, stable id per member (MySQL's server-id, ZooKeeper's
myid, Kafka's broker.id). Hand-written init scripts (the Kubernetes docs' MySQL example
parses `hostname`) are copied from set to set and get the offset or the parsing wrong; two
members with one id corrupt replication. The id follows the pod's true ordinal, so it stays
stable when `spec.ordinals.start` moves pods between sets.

Idempotent: applying it to its own output changes nothing. Removing the annotation does not
remove the init container (a running database must not lose its id on an edit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policies.base import Match, Policy, Result, Review
from policies.edits import Edits, FieldPath
from policies.objects import annotations_of, ref, shown

ANNOTATION = "stateful-guard.io/server-id"
OFFSET_ANNOTATION = "stateful-guard.io/server-id-offset"
INIT_NAME = "stateful-guard-server-id"
VOLUME = "stateful-guard-server-id"
INIT_DIR = "/stateful-guard"
APP_DIR = "/var/run/stateful-guard"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


@dataclass(frozen=True)
class Preset:
    file: str  # written in the shared volume
    content: str  # printf format, one %d for the id
    offset: int  # MySQL reserves 0; ZooKeeper's myid counts from 1
    app_path: str | None = None  # also mounted (subPath) where the application reads it


PRESETS = {
    "mysql": Preset(
        "server-id.cnf",
        r"[mysqld]\nserver-id=%d\n",
        100,
        "/etc/mysql/conf.d/stateful-guard-server-id.cnf",
    ),
    "zookeeper": Preset("myid", r"%d\n", 1),
    "kafka": Preset("broker.id", r"broker.id=%d\n", 0),
    "generic": Preset("server-id", r"%d\n", 0),
}

# POSIX sh (busybox): the ordinal from the pod-index label, else the hostname's suffix.
SCRIPT = """set -eu
ordinal="${POD_INDEX:-}"
case "$ordinal" in ''|*[!0-9]*) ordinal="${HOSTNAME##*-}" ;; esac
case "$ordinal" in
  ''|*[!0-9]*) echo "stateful-guard: no ordinal in label or hostname '$HOSTNAME'" >&2; exit 1 ;;
esac
id=$((SERVER_ID_OFFSET + ordinal))
printf "$SERVER_ID_FORMAT" "$id" > "$SERVER_ID_DIR/$SERVER_ID_FILE.tmp"
mv "$SERVER_ID_DIR/$SERVER_ID_FILE.tmp" "$SERVER_ID_DIR/$SERVER_ID_FILE"
echo "stateful-guard: ordinal $ordinal, id $id -> $SERVER_ID_FILE"
"""


INIT_USER = 65532  # "nonroot" in distroless images; any non-zero id writes the emptyDir


def _env(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


POD_ORDINAL = {
    "name": "POD_ORDINAL",
    "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}},
}


def init_container(preset: Preset, offset: int, image: str) -> dict[str, Any]:
    return {
        "name": INIT_NAME,
        "image": image,
        "command": ["sh", "-c", SCRIPT],
        "env": [
            {"name": "POD_INDEX", "valueFrom": POD_ORDINAL["valueFrom"]},
            _env("SERVER_ID_OFFSET", str(offset)),
            _env("SERVER_ID_FORMAT", preset.content),
            _env("SERVER_ID_FILE", preset.file),
            _env("SERVER_ID_DIR", INIT_DIR),
        ],
        "volumeMounts": [{"name": VOLUME, "mountPath": INIT_DIR}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
        # Pod Security `restricted`, whatever the image's own user (busybox runs as root):
        # annotated sets run in restricted namespaces too.
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": INIT_USER,
            "runAsGroup": INIT_USER,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _preset(review: Review) -> tuple[str, Preset, int] | Result:
    notes = annotations_of(review.object)
    name = str(notes.get(ANNOTATION, "")).strip()
    if not name:
        return Result.allow()
    owner = ref("StatefulSet", review.namespace, review.request.object_name)
    if name not in PRESETS:
        return Result.deny(
            f"{owner}: annotation {ANNOTATION}={shown(name)} names no preset; use one of "
            f"{', '.join(PRESETS)}.",
            short=f"{owner}: {ANNOTATION}={shown(name, 20)} is not one of {'|'.join(PRESETS)}",
        )
    preset = PRESETS[name]
    raw = notes.get(OFFSET_ANNOTATION)
    if raw is None:
        return name, preset, preset.offset
    try:
        offset = int(str(raw))
    except ValueError:
        offset = -1
    if offset < 0:
        return Result.deny(
            f"{owner}: annotation {OFFSET_ANNOTATION}={shown(raw)} must be a whole number >= 0.",
            short=f"{owner}: {OFFSET_ANNOTATION}={shown(raw, 20)} is not a whole number >= 0",
        )
    return name, preset, offset


def _put(edits: Edits, path: FieldPath, item: dict[str, Any], *, first: bool = False) -> None:
    """Make the list at `path` hold `item` in the entry with its name (added when missing)."""
    items = edits.get(path)
    for index, existing in enumerate(items if isinstance(items, list) else []):
        if isinstance(existing, dict) and existing.get("name") == item["name"]:
            edits.set((*path, index), item)
            return
    edits.insert(path, item, index=0 if first else None)


def mutate(review: Review) -> Result:
    chosen = _preset(review)
    if isinstance(chosen, Result) or review.object is None:
        return Result.allow()  # refused, with the reason, by validate
    name, preset, offset = chosen
    edits = review.edits
    pod: FieldPath = ("spec", "template", "spec")
    image = review.config.server_id_image
    _put(edits, (*pod, "initContainers"), init_container(preset, offset, image), first=True)
    _put(edits, (*pod, "volumes"), {"name": VOLUME, "emptyDir": {}})
    mounts = [{"name": VOLUME, "mountPath": APP_DIR}]
    if preset.app_path:
        mounts.append({"name": VOLUME, "mountPath": preset.app_path, "subPath": preset.file})
    containers = edits.get((*pod, "containers"))
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        if not isinstance(container, dict):
            continue
        at: FieldPath = (*pod, "containers", index)
        existing = container.get("volumeMounts") or []
        for mount in mounts:
            if mount not in existing:
                edits.insert((*at, "volumeMounts"), mount)
        _put(edits, (*at, "env"), POD_ORDINAL)
    if not edits.ops:
        return Result.allow()
    return Result.changed(
        f"add the {name} server-id init container ({preset.file}, offset {offset})"
    )


def validate(review: Review) -> Result:
    chosen = _preset(review)
    return chosen if isinstance(chosen, Result) else Result.allow()


POLICY = Policy(
    id="server-id",
    rationale="Two members with one server id corrupt replication.",
    matches=(
        Match(group="apps", resource="statefulsets", operations=frozenset({"CREATE", "UPDATE"})),
    ),
    mutate=mutate,
    validate=validate,
)
