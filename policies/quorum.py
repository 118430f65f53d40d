"""quorum: do not scale a consensus cluster below its quorum, or down too fast, nor take a
ready member away while the others cannot spare it.

Rule: a StatefulSet UPDATE or `statefulsets/scale` UPDATE that removes members (lowers the
replica count, or moves `spec.ordinals.start` so that running ordinals leave the range: they
go at once, and the members that replace them start empty) is refused when the members that
stay are below the set's quorum (`policies/quorum_profile.py`: the
`stateful-guard.io/min-replicas` annotation, else `stateful-guard.io/quorum`, else a majority
of the current members for a recognised consensus system such as ZooKeeper, etcd or a KRaft
controller quorum), or when it removes more than `stateful-guard.io/max-scale-down` members
at once. Scaling up is always allowed.

A pod DELETE or `pods/eviction` CREATE of a ready member is refused, with HTTP 429 so that
`kubectl drain` and autoscalers retry, while the set's other ready members are fewer than
its quorum (`validate_member_removal`).

A recognised system's majority is guarded only where there is one to lose: from 3 members
up (1 or 2 members stop with any member gone, which stateful-practices warns of), and never
against scaling to 0, a full stop that keeps every member's data.

Why: ZooKeeper, etcd, Kafka's KRaft controllers and Cassandra with QUORUM reads need a
majority of their members. Scaling a 5-member ensemble to 2 loses the majority at once; even
a legal target reached in one step removes members faster than data can re-replicate.

The annotations are read from the stored set and from the request, the stricter winning: a
patch that drops the annotation while it scales down is judged by the annotation it drops.
`kubectl scale` and the HorizontalPodAutoscaler use the scale subresource, which carries no
annotations: they are read from the set in the cluster view, and a set the view does not
know is decided by the failure mode (closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.base import Match, Policy, Result, Review
from policies.modes import FailureMode
from policies.objects import (
    annotations_of,
    is_kubernetes_controller,
    is_ready,
    name_of,
    ordinal_ranges,
    ordinal_start,
    ref,
    removed_ordinals,
    replicas,
    stateful_set_of_pod,
)
from policies.quorum_profile import MIN_REPLICAS, BadAnnotation, guarded_minimum, profile, whole
from policies.scale import SCALE, is_scale, set_of
from policies.view import POD, STATEFUL_SET

MAX_SCALE_DOWN = "stateful-guard.io/max-scale-down"


def _step(stateful_set: Mapping[str, Any] | None) -> int | None:
    raw = annotations_of(stateful_set).get(MAX_SCALE_DOWN)
    return None if raw is None else whole(MAX_SCALE_DOWN, raw)


def _removes_members(review: Review) -> bool:
    """Cheap first look: fewer replicas, or a moved ordinals start (no view lookup)."""
    request = review.request
    old, new = request.old_object, request.object
    return replicas(new) < replicas(old) or ordinal_start(new) != ordinal_start(old)


def validate(review: Review) -> Result:
    request = review.request
    if not _removes_members(review):
        return Result.allow()
    owner = ref("StatefulSet", request.namespace, request.object_name)
    stored = set_of(review, otherwise=request.old_object, to_read="its quorum annotations")
    if isinstance(stored, Result):
        return stored
    before, after = ordinal_ranges(
        request.old_object, request.object, stored if is_scale(review) else None
    )
    removed = removed_ordinals(before, after)
    old, new = len(before), len(before) - len(removed)  # new: the members that stay
    if not removed:
        return Result.allow()
    change = (
        f"scaling from {old} to {len(after)}"
        if before.start == after.start
        else f"moving spec.ordinals.start from {before.start} to {after.start} (removing "
        f"{len(removed)} of {old} members, the new ones start empty)"
    )
    judged = [stored] if is_scale(review) else [stored, request.object]
    try:
        quorums = [(q, guarded_minimum(q, old, stop=not after)) for q in map(profile, judged)]
        steps = [s for s in map(_step, judged) if s is not None]
    except BadAnnotation as bad:
        return Result.deny(
            f"{owner}: {bad}, so the quorum cannot be checked. Fix the annotation.",
            short=f"{owner}: {bad}",
        )
    quorum, minimum = max(quorums, key=lambda pair: pair[1])
    if quorum is not None and new < minimum:
        if quorum.system == "annotated":
            why = f"{quorum.source} asks for {minimum}"
            fix = "lower the annotation if the cluster really can run smaller"
        else:
            why = f"{quorum.system} (by its {quorum.source}) needs a majority, {minimum} of {old}"
            fix = f"annotate the set {MIN_REPLICAS}=<n> if it really can run smaller"
        return Result.deny(
            f"{owner}: {change} goes below its quorum: {why}; the cluster "
            f"would stop. Keep at least {minimum} replicas (remove members one at a time), or "
            f"{fix}.",
            short=f"{owner}: {old}->{new} is below its quorum; keep at least {minimum}",
        )
    if steps and len(removed) > min(steps):
        step = min(steps)
        return Result.deny(
            f"{owner}: {change} removes {len(removed)} members at once, more "
            f"than {MAX_SCALE_DOWN}={step}. Scale down in steps of at most {step}, letting "
            "the cluster settle in between.",
            short=f"{owner}: removes {len(removed)}; scale down {step} at a time",
        )
    return Result.allow()


def _pod_of(review: Review) -> Mapping[str, Any] | None:
    """The pod a DELETE or an eviction removes (an Eviction names it; the view has it)."""
    request = review.request
    if request.operation == "DELETE":
        return request.old_object
    return review.view.get(POD, request.namespace, request.object_name)


def validate_member_removal(review: Review) -> Result:
    """A pod DELETE or eviction: a ready member of a quorum set may go only while the others
    that are ready still make the quorum. Refused with 429 (retry later): once a member that
    is down is ready again, the same request passes, so `kubectl drain` waits, as for a
    PDB. A member that is not ready may always go (it serves nothing), and Kubernetes' own
    controllers (rolling updates, namespace deletion, garbage collection, taint eviction)
    are never refused."""
    request = review.request
    if not review.view.has(POD):
        return Result.allow()  # no count without the pods (force-delete decides its part)
    pod = _pod_of(review)
    if not is_ready(pod):
        return Result.allow()
    user = request.user_info
    if is_kubernetes_controller(user.username) or review.config.is_break_glass(
        user.username, user.groups
    ):
        return Result.allow()
    namespace = request.namespace
    set_name = stateful_set_of_pod(pod, review.view.list(STATEFUL_SET, namespace))
    stored = review.view.get(STATEFUL_SET, namespace, set_name) if set_name else None
    if stored is None:
        return Result.allow()  # not a member of a set we know: nothing to keep
    members = replicas(stored)
    try:
        quorum = profile(stored)
    except BadAnnotation:
        return Result.allow()  # refused, with the fix, where the set is changed or scaled
    required = guarded_minimum(quorum, members, stop=False)
    if quorum is None or required == 0:
        return Result.allow()
    pods = [p for p in review.view.list(POD, namespace) if stateful_set_of_pod(p) == set_name]
    if not pods:
        return Result.allow()  # manifests without pods, or a view behind: nothing to count
    ready = {name_of(p) for p in pods if is_ready(p)} | {name_of(pod)}  # the view may lag
    if len(ready) - 1 >= required:
        return Result.allow()
    start = ordinal_start(stored)
    down = [
        f"{set_name}-{i}" for i in range(start, start + members) if f"{set_name}-{i}" not in ready
    ]
    how = "evicting" if request.sub_resource == "eviction" else "deleting"
    owner = ref("pod", namespace, request.object_name)
    why = (
        f"{quorum.source} asks for {required}"
        if quorum.system == "annotated"
        else f"{quorum.system} (by its {quorum.source}) needs {required}"
    )
    if not down:  # every member ready, and still too few to spare one: waiting cannot help
        return Result.deny(
            f"{owner} is a member of StatefulSet {set_name}: all {members} members are ready "
            f"and {why}; {how} it leaves {len(ready) - 1} and the cluster stops. Scale the set "
            f"up first, or lower {MIN_REPLICAS} if it really can run smaller.",
            short=f"{owner}: {set_name} needs all {required} of its {members} members",
        )
    waiting = ", ".join(down)
    return Result.deny(
        f"{owner} is a ready member of StatefulSet {set_name}: {len(ready)} of {members} "
        f"members are ready (down: {waiting}) and {why}; {how} it now leaves "
        f"{len(ready) - 1} and the cluster stops. Wait until {waiting} "
        f"{'is' if len(down) == 1 else 'are'} ready again (answered 429: kubectl drain "
        f"retries), or annotate the set {MIN_REPLICAS}=<n> if it really can run smaller.",
        short=f"{owner}: {len(ready)}/{members} members of {set_name} ready, quorum "
        f"{required}; wait for {waiting}",
        retry=True,
    )


def validate_any(review: Review) -> Result:
    if review.request.resource.resource == "pods":
        return validate_member_removal(review)
    return validate(review)


POLICY = Policy(
    id="quorum",
    rationale="Scaling a consensus cluster below its majority, or taking a member away while "
    "others are down, takes it down.",
    matches=(
        Match(group="apps", resource="statefulsets", operations=frozenset({"UPDATE"})),
        SCALE,
        Match(group="", resource="pods", operations=frozenset({"DELETE"})),
        Match(group="", resource="pods", operations=frozenset({"CREATE"}), subresource="eviction"),
    ),
    validate=validate_any,
    default_failure_mode=FailureMode.CLOSED,
    guards_data=True,
)
