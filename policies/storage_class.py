"""storage-class: every claim gets a class that exists, and says so when it loses data.

Rule: on StatefulSet CREATE (each `volumeClaimTemplates` entry) and PVC CREATE, a claim with
no `storageClassName` (absent or null) gets the namespace's configured class. Without a
namespace class nothing is written: the cluster gives claims its default class itself (the
StatefulSet controller's claims when it makes them, a PVC created directly through the API
server's DefaultStorageClass plugin before any webhook sees it, and since Kubernetes 1.28 any
claim retroactively once a default exists), so writing it into a template only makes the
stored set differ from the manifest. An explicit `storageClassName: ""` (static binding to
pre-made PVs, e.g. NFS) and the legacy `volume.beta.kubernetes.io/storage-class` annotation
are left alone. A class that does not exist gets a warning (its claims stay Pending until it
does; it may come in the same `kubectl apply`, after the set); a class whose `reclaimPolicy` is
`Delete`, or that cannot expand, gets a warning.

Claim templates are immutable. On StatefulSet UPDATE a template that omits its class gets
the stored one back, so re-sending the original manifest (helm upgrade, kubectl apply and
replace, server-side apply) converges instead of being refused as a change of an immutable
field; a template that had no class stored is never given one on UPDATE.

Why: a claim naming a class that never appears stays Pending and the set never starts; a
namespace meant for one kind of storage should not get whatever the cluster defaults to. A
`Delete` class destroys the volume when its claim is deleted; a class that cannot expand
turns a full disk into a migration.
"""

from __future__ import annotations

from typing import Any

from policies.base import Match, Policy, Result, Review
from policies.edits import FieldPath
from policies.objects import (
    annotations_of,
    claim_templates,
    is_kubernetes_controller,
    name_of,
    ref,
    shown,
    spec,
)
from policies.view import STORAGE_CLASS

BETA_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
CREATE = frozenset({"CREATE"})
WRITES = frozenset({"CREATE", "UPDATE"})


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


def _unset(claim: dict[str, Any]) -> bool:
    """No class chosen: `storageClassName` absent or null, and no legacy annotation."""
    claim_spec = claim.get("spec")
    if claim_spec is not None and not isinstance(claim_spec, dict):
        return False  # not a claim we can judge
    chosen = (claim_spec or {}).get("storageClassName")
    return chosen is None and BETA_ANNOTATION not in annotations_of(claim)


def _stored_classes(review: Review) -> dict[str, str]:
    """The class each stored claim template has, by template name (UPDATE only)."""
    stored: dict[str, str] = {}
    for template in claim_templates(review.request.old_object):
        value = (template.get("spec") or {}).get("storageClassName")
        if isinstance(value, str) and name_of(template):
            stored[name_of(template)] = value
    return stored


def mutate(review: Review) -> Result:
    changes = []
    if review.request.operation == "UPDATE":
        stored = _stored_classes(review)
        for what, path, claim in _claims_at(review):
            value = stored.get(name_of(claim))
            if value is not None and _unset(claim):
                review.edits.set((*path, "spec", "storageClassName"), value)
                changes.append(f"keep the stored storageClassName {shown(value)} of {what}")
        return Result.changed(*changes)
    target = review.config.storage_class_for(review.namespace)
    if target is None:
        return Result.allow()  # the cluster's default applies to the claims themselves
    direct = review.request.resource.resource == "persistentvolumeclaims"
    if direct and review.view.default_storage_class() is not None:
        return Result.allow()  # the DefaultStorageClass plugin has set it before us
    for what, path, claim in _claims_at(review):
        if _unset(claim):
            review.edits.set((*path, "spec", "storageClassName"), target)
            changes.append(f"set storageClassName of {what} to {target}")
    return Result.changed(*changes)


def _class_of(claim: dict[str, Any]) -> str | None:
    claim_spec = claim.get("spec")
    value = claim_spec.get("storageClassName") if isinstance(claim_spec, dict) else None
    if value is None:
        value = annotations_of(claim).get(BETA_ANNOTATION)
    return value if isinstance(value, str) else None


def validate(review: Review) -> Result:
    if review.request.operation != "CREATE":
        return Result.allow()  # templates are immutable: judged once, at creation
    results: list[Result] = []
    seen: set[str] = set()
    owner = _owner(review)
    quiet = is_kubernetes_controller(review.request.user_info.username)
    for what, _, claim in _claims_at(review):
        name = _class_of(claim)
        if not name or name in seen:
            continue  # no class, or "" (static binding): nothing to check
        seen.add(name)
        if not review.view.has(STORAGE_CLASS):
            results.append(
                Result.cannot_decide(
                    f"{owner}: cannot check StorageClass {name}, the cluster view has no "
                    "StorageClasses (offline: pass them with --objects, e.g. `kubectl get "
                    "storageclass -o yaml`)",
                    short=f"{owner}: cannot check class {name}; pass StorageClasses (--objects)",
                )
            )
            continue
        storage_class = review.view.get(STORAGE_CLASS, "", name)
        if storage_class is None:
            # A warning, not a refusal: one `kubectl apply -f` of a set and the class it
            # names (the Kubernetes docs' Cassandra) sends the set first, and its claims
            # bind once the class exists.
            results.append(
                Result.warn(
                    f"{owner} {what} names StorageClass {name}, which does not exist (yet); its "
                    f"claims stay Pending until it does. Create {name}, or use an existing class "
                    "(kubectl get storageclass).",
                    short=f"{owner}: StorageClass {name} does not exist; create it or fix the name",
                )
            )
            continue
        if quiet:
            continue  # the set's controller creating its claims: the set was warned already
        if storage_class.get("reclaimPolicy", "Delete") == "Delete":
            results.append(
                Result.warn(
                    f"{owner}: StorageClass {name} has reclaimPolicy Delete, so a volume is "
                    "destroyed with its claim; databases want a Retain class.",
                    short=f"{owner}: class {name} deletes volumes with their claims; use a Retain "
                    "class",
                )
            )
        if storage_class.get("allowVolumeExpansion") is not True:
            results.append(
                Result.warn(
                    f"{owner}: StorageClass {name} does not allow volume expansion, so a full "
                    "disk means a migration; choose a class with allowVolumeExpansion: true.",
                    short=f"{owner}: class {name} cannot expand volumes; use one with "
                    "allowVolumeExpansion",
                )
            )
    return Result.merge(results)


POLICY = Policy(
    id="storage-class",
    rationale="A claim without a usable class never binds, or binds to storage that loses data.",
    matches=(
        Match(group="apps", resource="statefulsets", operations=WRITES),
        Match(group="", resource="persistentvolumeclaims", operations=CREATE),
    ),
    mutate=mutate,
    validate=validate,
)
