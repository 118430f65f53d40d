"""Small readers for Kubernetes objects held as plain dicts (as the API server sends them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Obj = dict[str, Any]

# What marks the objects the leader makes (headless Services, quorum PodDisruptionBudgets):
# only objects with this label are ever changed or deleted by us.
MANAGED_BY = {"app.kubernetes.io/managed-by": "stateful-guard"}
SET_ANNOTATION = "stateful-guard.io/statefulset"  # on a managed object: the set it serves


def is_managed(obj: Mapping[str, Any] | None) -> bool:
    return all(labels(obj).get(k) == v for k, v in MANAGED_BY.items())


KUBE_CONTROLLER_MANAGER = "system:kube-controller-manager"
# Controllers of kube-controller-manager that create or delete pods and claims when it runs
# with --use-service-account-credentials (the default in kubeadm and most distributions).
KUBE_CONTROLLER_ACCOUNTS = frozenset(
    f"system:serviceaccount:kube-system:{name}"
    for name in (
        "pod-garbage-collector",
        "node-controller",
        "statefulset-controller",
        "deployment-controller",
        "namespace-controller",
        "generic-garbage-collector",
        "persistent-volume-binder",
        "pvc-protection-controller",
        "taint-eviction-controller",
    )
)


def is_kubernetes_controller(username: str) -> bool:
    """Whether the user is one of Kubernetes' own controllers, which we never get in the way of."""
    return username == KUBE_CONTROLLER_MANAGER or username in KUBE_CONTROLLER_ACCOUNTS


def metadata(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = (obj or {}).get("metadata")
    return meta if isinstance(meta, dict) else {}


def spec(obj: Mapping[str, Any] | None) -> Obj:
    value = (obj or {}).get("spec")
    return value if isinstance(value, dict) else {}


def labels(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    value = metadata(obj).get("labels")
    return value if isinstance(value, dict) else {}


def annotations_of(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    value = metadata(obj).get("annotations")
    return value if isinstance(value, dict) else {}


def name_of(obj: Mapping[str, Any] | None) -> str:
    value = metadata(obj).get("name")
    return value if isinstance(value, str) else ""


def shown(value: object, limit: int = 40) -> str:
    """A value from an object (an annotation, a name) as messages quote it: its first
    `limit` characters only, so a 100 KB annotation is never echoed into answers and logs."""
    text = str(value)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def ref(kind: str, namespace: str, name: str) -> str:
    """How messages name an object: `pod db/mysql-1`, `StorageClass fast`."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def controller_of(obj: Mapping[str, Any] | None, kind: str, group: str = "apps") -> str | None:
    """The name of the controller owner of the given kind, if the object has one."""
    owners = metadata(obj).get("ownerReferences")
    if not isinstance(owners, list):
        return None
    for owner in owners:
        if (
            isinstance(owner, dict)
            and owner.get("controller") is True
            and owner.get("kind") == kind
            and str(owner.get("apiVersion", "")).split("/")[0] == group
        ):
            name = owner.get("name")
            return name if isinstance(name, str) else None
    return None


def claim_templates(stateful_set: Mapping[str, Any] | None) -> list[Obj]:
    """The set's volumeClaimTemplates that are objects (anything else is not ours to judge)."""
    templates = spec(stateful_set).get("volumeClaimTemplates")
    if not isinstance(templates, list):
        return []
    return [t for t in templates if isinstance(t, dict)]


def pod_template_labels(stateful_set: Mapping[str, Any] | None) -> Mapping[str, str]:
    template = spec(stateful_set).get("template")
    return labels(template if isinstance(template, dict) else None)


def claim_volumes(pod_spec: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(volume name, claim name) of a pod spec's `persistentVolumeClaim` volumes."""
    volumes = (pod_spec or {}).get("volumes")
    found: list[tuple[str, str]] = []
    for volume in volumes if isinstance(volumes, list) else []:
        source = volume.get("persistentVolumeClaim") if isinstance(volume, dict) else None
        if isinstance(source, dict) and isinstance(source.get("claimName"), str):
            found.append((str(volume.get("name", "")), source["claimName"]))
    return found


def claim_names_of_pod(pod: Mapping[str, Any] | None) -> list[str]:
    """The claims a pod mounts through `persistentVolumeClaim` volumes."""
    return [claim for _, claim in claim_volumes(spec(pod))]


def replicas(stateful_set: Mapping[str, Any] | None) -> int:
    """spec.replicas as the API server defaults it (1 when unset)."""
    value = spec(stateful_set).get("replicas")
    return value if isinstance(value, int) else 1


def ordinal_start(stateful_set: Mapping[str, Any] | None) -> int:
    ordinals = spec(stateful_set).get("ordinals")
    start = ordinals.get("start") if isinstance(ordinals, dict) else None
    return start if isinstance(start, int) else 0


def ordinals(stateful_set: Mapping[str, Any] | None, count: int | None = None) -> range:
    """The ordinals a set runs: [start, start + replicas), per `spec.ordinals.start`."""
    start = ordinal_start(stateful_set)
    return range(start, start + (replicas(stateful_set) if count is None else count))


POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"


def is_ordinal(text: str) -> bool:
    """An ordinal as the StatefulSet controller writes it: ASCII digits, no leading zero
    (`str.isdigit` also accepts "²", which `int` refuses)."""
    return text.isascii() and text.isdigit() and (text == "0" or text[0] != "0")


def stateful_set_of_pod(
    pod: Mapping[str, Any] | None, stateful_sets: Iterable[Mapping[str, Any]] = ()
) -> str | None:
    """The StatefulSet a pod belongs to, by any of the marks the controller leaves: its
    controller ownerReference, its `statefulset.kubernetes.io/pod-name` label (kept when the
    set is deleted with `--cascade=orphan`), or its name `<set>-<ordinal>` for a set that
    exists. Removing one or two of them does not make a set pod an ordinary one."""
    owner = controller_of(pod, "StatefulSet")
    if owner is not None:
        return owner
    name = name_of(pod)
    if POD_NAME_LABEL in labels(pod):
        base, _, ordinal = name.rpartition("-")
        return base if base and is_ordinal(ordinal) else name
    best: str | None = None
    for stateful_set in stateful_sets:
        set_name = name_of(stateful_set)
        rest = name[len(set_name) + 1 :]
        ours = set_name and name.startswith(f"{set_name}-") and is_ordinal(rest)
        if ours and (best is None or len(set_name) > len(best)):
            best = set_name
    return best


def is_running(pod: Mapping[str, Any] | None) -> bool:
    """Scheduled and not finished: containers may run on a node (or will, once it returns)."""
    phase = (pod or {}).get("status")
    finished = isinstance(phase, dict) and phase.get("phase") in ("Succeeded", "Failed")
    return bool(spec(pod).get("nodeName")) and not finished


def ready_condition(obj: Mapping[str, Any] | None) -> bool | None:
    """A pod's or node's Ready condition: True, False (False or Unknown), None without one."""
    status = (obj or {}).get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    for c in conditions or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return c.get("status") == "True"
    return None


def is_ready(pod: Mapping[str, Any] | None) -> bool:
    """Running, not terminating, and its Ready condition True: a member that serves."""
    if not is_running(pod) or metadata(pod).get("deletionTimestamp"):
        return False
    return ready_condition(pod) is True


def ordinal_ranges(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, stored: Mapping[str, Any] | None
) -> tuple[range, range]:
    """The ordinals a set runs before and after an UPDATE. A scale request (`stored` is the
    set, `old`/`new` are Scales) moves only the count; a set UPDATE may also move
    `spec.ordinals.start`, which removes every ordinal that leaves the range at once."""
    if stored is not None:
        return ordinals(stored, replicas(old)), ordinals(stored, replicas(new))
    return ordinals(old), ordinals(new)


def removed_ordinals(before: range, after: range) -> list[int]:
    """The ordinals running before and not after: a scale-down, or a moved start."""
    return [o for o in before if o not in after]


def claim_owner(
    claim: str, stateful_sets: Iterable[Mapping[str, Any]]
) -> tuple[Mapping[str, Any], str, int] | None:
    """(set, template, ordinal) for a claim named `<template>-<set>-<ordinal>`.

    Claims carry no label naming their set or ordinal, and names may contain dashes, so the
    name is matched against the sets that exist (the longest set name wins)."""
    best: tuple[Mapping[str, Any], str, int] | None = None
    for stateful_set in stateful_sets:
        name = name_of(stateful_set)
        for template in claim_templates(stateful_set):
            prefix = f"{name_of(template)}-{name}-"
            rest = claim[len(prefix) :]
            canonical = is_ordinal(rest)
            longer = best is None or len(name) > len(name_of(best[0]))
            if claim.startswith(prefix) and canonical and longer:
                best = (stateful_set, name_of(template), int(rest))
    return best


def selects(selector: Mapping[str, Any] | None, pod_labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels.

    A null selector selects nothing; an empty one everything (policy/v1 PDBs, Services)."""
    if not isinstance(selector, dict):
        return False
    match_labels = selector.get("matchLabels") or {}
    if any(pod_labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        if not isinstance(expression, dict):
            return False
        key, operator = str(expression.get("key")), expression.get("operator")
        values = expression.get("values") or []
        present = key in pod_labels
        if operator == "In" and not (present and pod_labels[key] in values):
            return False
        if operator == "NotIn" and present and pod_labels[key] in values:
            return False
        if (operator == "Exists") != present and operator in ("Exists", "DoesNotExist"):
            return False
    return True
