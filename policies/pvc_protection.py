"""pvc-protection: never delete a StatefulSet's data while the set still needs it.

Rule:
- PVC DELETE of a claim `<template>-<set>-<ordinal>` whose set exists and whose ordinal is in
  range (`[ordinals.start, ordinals.start + replicas)`) is refused; a claim of a scaled-down
  ordinal is allowed with a warning.
- PVC UPDATE that removes the `kubernetes.io/pvc-protection` finalizer from such a claim is
  refused (Kubernetes' own pvc-protection controller may, once the claim is unused).
- A claim mounted by a running StatefulSet pod is guarded the same way even when no set
  names it any more (the set was deleted with `--cascade=orphan`; its pods run on).
- A `persistentVolumeClaimRetentionPolicy` of `Delete` is the owner's declared intent:
  deleting the set (`whenDeleted`) or scaling it down (`whenScaled`, which a moved
  `spec.ordinals.start` is too, for every ordinal that leaves the range) deletes claims, and
  that is what they asked for. It is warned of when a set is created with it, or changed to
  it, and when the delete or scale-down happens; it is refused only where the configuration
  says `retentionDelete: refuse` (globally or for the namespace). An orphaning delete
  (`--cascade=orphan`) deletes no claims and is never refused.
- A claim template carrying `stateful-guard.io/allow-data-deletion` would arm every claim
  the set makes: refused where break-glass annotations count, warned of (inert) elsewhere.
- Past the guard: a GuardException naming the claim or set (the engine applies it) and,
  where the configuration lets annotations count, `stateful-guard.io/allow-data-deletion` on
  the claim or the set (`policies.break_glass`).
- Kubernetes' own controllers are never refused: the namespace controller deleting what a
  namespace holds, the garbage collector following ownerReferences (how retention `Delete`
  is carried out), the StatefulSet and volume controllers. A namespace delete never hangs
  because of us.

Why: a claim deleted under a running pod lives on only until the pod restarts; then it is
gone and the set re-creates it empty: that member's data is lost. The finalizer is what
delays that.

The scale subresource carries no labels or annotations: the set is read from the cluster
view, and a set the view does not know is decided by the failure mode (closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from policies import break_glass
from policies.base import Match, Policy, Result, Review
from policies.modes import FailureMode
from policies.objects import (
    claim_names_of_pod,
    claim_owner,
    is_kubernetes_controller,
    is_running,
    metadata,
    name_of,
    ordinal_ranges,
    ordinal_start,
    ordinals,
    ref,
    removed_ordinals,
    spec,
    stateful_set_of_pod,
)
from policies.scale import SCALE, is_scale, set_of
from policies.view import POD, STATEFUL_SET

FINALIZER = "kubernetes.io/pvc-protection"


def _retention(stateful_set: Mapping[str, Any] | None, when: str) -> str:
    policy = spec(stateful_set).get("persistentVolumeClaimRetentionPolicy")
    value = policy.get(when) if isinstance(policy, dict) else None
    return value if isinstance(value, str) else "Retain"


def _allowed(review: Review, obj: Mapping[str, Any] | None) -> bool:
    return break_glass.annotated(review, obj, break_glass.DATA_DELETION)


def _way_past(review: Review, flag: str, name: str) -> str:
    what = "claim" if flag == "claim" else "set"
    return break_glass.way_past(
        review,
        "pvc-protection",
        flag,
        name,
        annotate=f"the {what} {break_glass.DATA_DELETION}",
    )


def _claim(review: Review) -> Result:
    request = review.request
    if is_kubernetes_controller(request.user_info.username):
        return Result.allow()
    claim = request.old_object
    name = request.object_name
    owner = ref("PVC", request.namespace, name)
    if not review.view.has(STATEFUL_SET):
        return Result.cannot_decide(
            f"{owner}: cannot tell its StatefulSet, the cluster view has no StatefulSets"
        )
    sets = review.view.list(STATEFUL_SET, request.namespace)
    found = claim_owner(name, sets)
    if found is None:
        return _orphaned(review, owner, sets)
    stateful_set, template, ordinal = found
    set_name = name_of(stateful_set)
    in_range = ordinal in ordinals(stateful_set)
    if request.operation == "DELETE":
        if not in_range:
            return Result.warn(
                f"{owner} held ordinal {ordinal} of StatefulSet {set_name}, now scaled below it; "
                "its data is gone for good, and scaling up again starts that member empty.",
                short=f"{owner}: data of scaled-down {set_name}-{ordinal} is deleted for good",
            )
        if _allowed(review, claim) or _allowed(review, stateful_set):
            return Result.allow()
        keep = ordinal - ordinal_start(stateful_set)
        return Result.deny(
            f"{owner} is claim template {template} of StatefulSet {set_name}, ordinal {ordinal} "
            f"(running ordinals {_span(stateful_set)}); deleted now, it is gone when "
            f"{set_name}-{ordinal} restarts and the set re-creates it empty. Scale {set_name} "
            f"to {keep} replica{'' if keep == 1 else 's'} first, or "
            f"{_way_past(review, 'claim', name)}.",
            short=f"{owner}: in use by StatefulSet {set_name} (ordinal {ordinal}); "
            "scale down first",
        )
    # UPDATE: only the removal of the protection finalizer matters.
    if not _finalizer_removed(request) or not in_range:
        return Result.allow()
    if _allowed(review, claim) or _allowed(review, stateful_set):
        return Result.allow()
    return Result.deny(
        f"{owner}: removing finalizer {FINALIZER} lets the claim of {set_name}-{ordinal} "
        "(StatefulSet still running it) be deleted under the pod. Keep the finalizer; "
        f"Kubernetes removes it once no pod uses the claim.",
        short=f"{owner}: keep finalizer {FINALIZER}; {set_name}-{ordinal} still uses it",
    )


def _finalizer_removed(request: Any) -> bool:
    return FINALIZER in _finalizers(request.old_object) and FINALIZER not in _finalizers(
        request.object
    )


def _orphaned(review: Review, owner: str, sets: Iterable[Mapping[str, Any]]) -> Result:
    """A claim no set's templates name: still guarded while a running StatefulSet pod mounts
    it (the set was deleted with --cascade=orphan, and its pods run on)."""
    request = review.request
    if not review.view.has(POD) or _allowed(review, request.old_object):
        return Result.allow()
    if request.operation == "UPDATE" and not _finalizer_removed(request):
        return Result.allow()
    name = request.object_name
    sets = list(sets)
    for pod in review.view.list(POD, request.namespace):
        set_name = stateful_set_of_pod(pod, sets)
        if set_name is None or not is_running(pod) or name not in claim_names_of_pod(pod):
            continue
        pod_name = name_of(pod)
        what = "deleted now" if request.operation == "DELETE" else "without its finalizer"
        return Result.deny(
            f"{owner} is mounted by pod {pod_name} of StatefulSet {set_name}, which still runs "
            f"(orphaned from its set or not); {what}, the claim is gone when {pod_name} "
            f"restarts, and its data with it. Stop the pod first, or "
            f"{_way_past(review, 'claim', name)}.",
            short=f"{owner}: in use by running StatefulSet pod {pod_name}; stop it first",
        )
    return Result.allow()


def _finalizers(obj: Mapping[str, Any] | None) -> list[Any]:
    value = metadata(obj).get("finalizers")
    return value if isinstance(value, list) else []


def _span(stateful_set: Mapping[str, Any]) -> str:
    running = ordinals(stateful_set)
    return f"{running.start}-{running.stop - 1}" if len(running) else "none"


def _declared(review: Review, stateful_set: Mapping[str, Any] | None, warning: Result) -> Result:
    """A retention policy of Delete being carried out: the owner's intent, warned of, and
    refused only where the configuration asks (and the set carries no allow annotation)."""
    if review.config.retention_delete_for(review.namespace) == "refuse" and not _allowed(
        review, stateful_set
    ):
        finding = warning.warnings[0]
        way = _way_past(review, "statefulset", review.request.object_name)
        return Result.deny(
            f"{finding.message} Refused because retentionDelete is refuse here: set the "
            f"retention policy to Retain first, or {way}.",
            short=finding.short,
        )
    return warning


def _created(review: Review) -> Result:
    """CREATE, or an UPDATE that changes the retention policy: say what Delete means."""
    request = review.request
    new = [_retention(request.object, w) for w in ("whenDeleted", "whenScaled")]
    if "Delete" not in new:
        return Result.allow()
    if request.operation == "UPDATE" and new == [
        _retention(request.old_object, w) for w in ("whenDeleted", "whenScaled")
    ]:
        return Result.allow()  # said when it was declared; not on every upgrade
    owner = ref("StatefulSet", request.namespace, request.object_name)
    what = " or ".join(
        w
        for w, value in zip(("deleting it", "scaling it down"), new, strict=True)
        if value == "Delete"
    )
    return Result.warn(
        f"{owner}: persistentVolumeClaimRetentionPolicy says Delete: {what} deletes its "
        "claims and their data. Keep Retain for data you cannot rebuild.",
        short=f"{owner}: retention Delete: {what} deletes its claims",
    )


def _set(review: Review) -> Result:
    request = review.request
    if request.operation == "CREATE" or (
        request.operation == "UPDATE"
        and not is_scale(review)
        and not removed_ordinals(*ordinal_ranges(request.old_object, request.object, None))
    ):
        return _created(review) + break_glass.in_templates(review, break_glass.DATA_DELETION)
    if is_kubernetes_controller(request.user_info.username):
        return Result.allow()
    owner = ref("StatefulSet", request.namespace, request.object_name)
    scale = is_scale(review)
    stateful_set = set_of(review, otherwise=request.old_object, to_read="its retention policy")
    if isinstance(stateful_set, Result):
        return stateful_set
    if request.operation == "DELETE":
        orphan = (request.options or {}).get("propagationPolicy") == "Orphan"
        if orphan or _retention(stateful_set, "whenDeleted") != "Delete":
            return Result.allow()
        return _declared(
            review,
            stateful_set,
            Result.warn(
                f"{owner} has persistentVolumeClaimRetentionPolicy.whenDeleted: Delete; "
                "deleting it deletes the claims and data of all its members.",
                short=f"{owner}: deleting it deletes its claims (whenDeleted: Delete)",
            ),
        )
    before, after = ordinal_ranges(
        request.old_object, request.object, stateful_set if scale else None
    )
    removed = removed_ordinals(before, after)
    if not removed:
        return Result.allow()
    current = request.object if not scale else stateful_set
    if _retention(current, "whenScaled") != "Delete":
        return Result.allow()
    lost = ", ".join(f"{request.object_name}-{o}" for o in removed)
    change = (
        f"scaling from {len(before)} to {len(after)}"
        if before.start == after.start
        else f"moving spec.ordinals.start from {before.start} to {after.start}"
    )
    return _declared(
        review,
        stateful_set,  # the stored set: an allow annotation added by this very patch is not
        Result.warn(  # one yet (adding it and using it take two requests, the first visible)
            f"{owner} has persistentVolumeClaimRetentionPolicy.whenScaled: Delete; {change} "
            f"deletes the claims and data of {lost}.",
            short=f"{owner}: removes {len(removed)} members' claims (whenScaled: Delete)",
        ),
    )


def validate(review: Review) -> Result:
    if review.request.resource.resource == "persistentvolumeclaims":
        return _claim(review)
    return _set(review)


CHANGES = frozenset({"UPDATE", "DELETE"})
SET_OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE"})
POLICY = Policy(
    id="pvc-protection",
    rationale="A claim deleted under its StatefulSet comes back empty: that member's data is lost.",
    matches=(
        Match(group="", resource="persistentvolumeclaims", operations=CHANGES),
        Match(group="apps", resource="statefulsets", operations=SET_OPERATIONS),
        SCALE,
    ),
    validate=validate,
    default_failure_mode=FailureMode.CLOSED,
    guards_data=True,
)
