"""storage-class: every claim gets a class that exists, and says so when it loses data.

Rule: on StatefulSet CREATE (each `volumeClaimTemplates` entry) and PVC CREATE, a claim with
no `storageClassName` field gets the namespace's configured class, else the cluster's
default StorageClass. An explicit `storageClassName: ""` (static binding to pre-made PVs,
e.g. NFS) and the legacy `volume.beta.kubernetes.io/storage-class` annotation are left alone.
A class that does not exist is refused; a class whose `reclaimPolicy` is `Delete`, or that
cannot expand, gets a warning.

Why: a claim naming a missing class stays Pending forever and the set never starts; a
template without a class depends on whatever default exists when each ordinal is first
created, so replicas of one set can land on different storage. A `Delete` class destroys the
volume when its claim is deleted; a class that cannot expand turns a full disk into a
migration.

Note: for a PVC created directly, the API server's DefaultStorageClass plugin runs before
webhooks and fills the cluster default, so the namespace class applies to claims created
from StatefulSet templates and to clusters without a default class.
"""

from __future__ import annotations

from typing import Any

from policies.base import Match, Policy, Result, Review
from policies.edits import FieldPath
from policies.objects import annotations_of, is_kubernetes_controller, name_of, ref, spec
from policies.view import STORAGE_CLASS

BETA_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
CREATE = frozenset({"CREATE"})


def _claims_at(review: Review) -> list[tuple[str, FieldPath, dict[str, Any]]]:
    """(description, path, claim object) for every claim the request would create."""
    obj = review.object
    if obj is None:
        return []
    if review.request.resource.resource == "persistentvolumeclaims":
        return [("claim", (), obj)]
    templates = spec(obj).get("volumeClaimTemplates")
    return [
        (f"claim template {name_of(t) or '?'}", ("spec", "volumeClaimTemplates", index), t)
        for index, t in enumerate(templates if isinstance(templates, list) else [])
        if isinstance(t, dict)
    ]


def _owner(review: Review) -> str:
    kind = "PVC" if review.request.resource.resource == "persistentvolumeclaims" else "StatefulSet"
    return ref(kind, review.namespace, review.request.object_name)


def mutate(review: Review) -> Result:
    target = review.config.storage_class_for(review.namespace)
    if target is None:
        default = review.view.default_storage_class()
        target = name_of(default) if default else None
    if not target:
        return Result.allow()
    changes = []
    for what, path, claim in _claims_at(review):
        claim_spec = claim.get("spec")
        if claim_spec is not None and not isinstance(claim_spec, dict):
            continue
        if "storageClassName" in (claim_spec or {}) or BETA_ANNOTATION in annotations_of(claim):
            continue
        review.edits.set((*path, "spec", "storageClassName"), target)
        changes.append(f"set storageClassName of {what} to {target}")
    return Result.changed(*changes)


def _class_of(claim: dict[str, Any]) -> str | None:
    value = (claim.get("spec") or {}).get("storageClassName")
    if value is None:
        value = annotations_of(claim).get(BETA_ANNOTATION)
    return value if isinstance(value, str) else None


def validate(review: Review) -> Result:
    result = Result.allow()
    seen: set[str] = set()
    owner = _owner(review)
    quiet = is_kubernetes_controller(review.request.user_info.username)
    for what, _, claim in _claims_at(review):
        name = _class_of(claim)
        if not name or name in seen:
            continue  # no class, or "" (static binding): nothing to check
        seen.add(name)
        if not review.view.has(STORAGE_CLASS):
            result += Result.cannot_decide(
                f"{owner}: cannot check StorageClass {name}, the cluster view has no "
                "StorageClasses",
                short=f"{owner}: cannot check class {name}: view has no StorageClasses",
            )
            continue
        storage_class = review.view.get(STORAGE_CLASS, "", name)
        if storage_class is None:
            result += Result.deny(
                f"{owner} {what} names StorageClass {name}, which does not exist; its claims "
                f"would stay Pending. Use an existing class (kubectl get storageclass) or "
                f"create {name} first.",
                short=f"{owner}: StorageClass {name} does not exist; use an existing class",
            )
            continue
        if quiet:
            continue  # the set's controller creating its claims: the set was warned already
        if storage_class.get("reclaimPolicy", "Delete") == "Delete":
            result += Result.warn(
                f"{owner}: StorageClass {name} has reclaimPolicy Delete, so a volume is "
                "destroyed with its claim; databases want a Retain class.",
                short=f"{owner}: class {name} deletes volumes with their claims; use a Retain "
                "class",
            )
        if storage_class.get("allowVolumeExpansion") is not True:
            result += Result.warn(
                f"{owner}: StorageClass {name} does not allow volume expansion, so a full "
                "disk means a migration; choose a class with allowVolumeExpansion: true.",
                short=f"{owner}: class {name} cannot expand volumes; use one with "
                "allowVolumeExpansion",
            )
    return result


POLICY = Policy(
    id="storage-class",
    rationale="A claim without a usable class never binds, or binds to storage that loses data.",
    matches=(
        Match(group="apps", resource="statefulsets", operations=CREATE),
        Match(group="", resource="persistentvolumeclaims", operations=CREATE),
    ),
    mutate=mutate,
    validate=validate,
)
