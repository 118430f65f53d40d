"""force-delete: never force-delete a running StatefulSet pod.

Rule: a pod DELETE with `gracePeriodSeconds: 0` is refused when the pod belongs to a
StatefulSet, is scheduled (`spec.nodeName` set) and has not finished.

Why: a StatefulSet promises at most one pod per identity. A force delete removes the pod
from the API at once, without waiting for the kubelet to confirm the containers stopped; the
controller then starts a new `mysql-1` while the old one may still run on an unreachable
node and write to the same volume: split brain, corrupted data.

Sees: pods DELETE (the API server has already filled `gracePeriodSeconds`: the user's value,
else the pod's own, and 0 for pods never scheduled or already finished).

Allowed: the kubelet's final delete of a terminating pod on its own node, Kubernetes' own
controllers (pod GC, node lifecycle, the namespace and garbage collectors), configured
break-glass users and groups, and pods annotated `stateful-guard.io/allow-force-delete`.
"""

from __future__ import annotations

from policies.base import FailureMode, Match, Policy, Result, Review
from policies.objects import (
    annotations_of,
    claim_names_of_pod,
    controller_of,
    is_kubernetes_controller,
    metadata,
    spec,
)

ALLOW_ANNOTATION = "stateful-guard.io/allow-force-delete"
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


def validate(review: Review) -> Result:
    request = review.request
    pod = request.old_object
    if pod is None:
        return Result.cannot_decide(
            f"pod {request.namespace}/{request.object_name}: the request carries no oldObject",
        )
    grace = (request.options or {}).get("gracePeriodSeconds")
    if grace != 0:
        return Result.allow()
    set_name = controller_of(pod, "StatefulSet")
    if set_name is None:
        return Result.allow()
    pod_spec = spec(pod)
    node = pod_spec.get("nodeName")
    if not node or (pod.get("status") or {}).get("phase") in FINISHED_PHASES:
        return Result.allow()  # nothing runs, nothing can run twice
    user = request.user_info
    if user.username == f"system:node:{node}" and metadata(pod).get("deletionTimestamp"):
        return Result.allow()  # the kubelet's final delete after the containers stopped
    if is_kubernetes_controller(user.username):
        return Result.allow()
    if review.config.is_break_glass(user.username, user.groups):
        return Result.allow()
    if str(annotations_of(pod).get(ALLOW_ANNOTATION, "")).strip():
        return Result.allow()

    pod_name = request.object_name
    claims = claim_names_of_pod(pod)
    still = f"still writes to {' and '.join(claims)}" if claims else "still runs"
    return Result.deny(
        f"pod {request.namespace}/{pod_name} belongs to StatefulSet {set_name}; force deletion "
        f"(grace period 0) can start a second {pod_name} while the first {still}. "
        f"Delete without --force, or annotate the pod {ALLOW_ANNOTATION}=<reason>.",
        short=f"pod {request.namespace}/{pod_name} of StatefulSet {set_name} with grace period 0;"
        " delete without --force",
    )


POLICY = Policy(
    id="force-delete",
    rationale="A force-deleted StatefulSet pod can run twice and corrupt its volume.",
    matches=(Match(group="", resource="pods", operations=frozenset({"DELETE"})),),
    validate=validate,
    default_failure_mode=FailureMode.CLOSED,
    guards_data=True,
)
