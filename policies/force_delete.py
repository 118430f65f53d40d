"""force-delete: never force-delete a running StatefulSet pod, by any route.

Rule: removing a StatefulSet pod from the API at once is refused while it may still run
(scheduled, not finished):
- a pod DELETE with `gracePeriodSeconds: 0` (`kubectl delete --force`);
- an Eviction (`pods/eviction` CREATE, `kubectl drain --grace-period=0`) whose
  `deleteOptions.gracePeriodSeconds` is 0: the API server deletes the pod itself and runs no
  pods-DELETE admission for it; the pod is found by name in the cluster view;
- a pod UPDATE that removes or changes its `statefulset.kubernetes.io/pod-name` label, the
  mark the pods webhook selects on (so the next request would not reach us);
- a StatefulSet whose pod template carries `stateful-guard.io/allow-force-delete`, where
  break-glass annotations count: it would pre-arm every pod, silently and for good (where
  they do not, it is inert and warned of; `policies.break_glass`).

A pod is a set pod by its ownerReference, its pod-name label or its `<set>-<ordinal>` name
(`objects.stateful_set_of_pod`): an orphaned pod (`kubectl delete sts --cascade=orphan`) is
still one, and stripping one mark leaves the others.

Why: a StatefulSet promises at most one pod per identity. A force delete removes the pod
from the API at once, without waiting for the kubelet to confirm the containers stopped; the
controller then starts a new `mysql-1` while the old one may still run on an unreachable
node and write to the same volume: split brain, corrupted data.

Sees: pods DELETE (the API server has already filled `gracePeriodSeconds`: the user's value,
else the pod's own, and 0 for pods never scheduled or already finished), pods UPDATE,
`pods/eviction` CREATE, StatefulSet CREATE/UPDATE.

Allowed: the kubelet's final delete of a terminating pod on its own node, Kubernetes' own
controllers (pod GC, node lifecycle, the namespace and garbage collectors), configured
break-glass users and groups, pods of a fenced node, a GuardException naming the pod (the
engine applies it), and, where the configuration lets annotations count, pods annotated
`stateful-guard.io/allow-force-delete` (README "Security").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies import break_glass
from policies.base import Match, Policy, Result, Review
from policies.modes import FailureMode
from policies.objects import (
    POD_NAME_LABEL,
    claim_names_of_pod,
    is_kubernetes_controller,
    is_running,
    labels,
    metadata,
    ready_condition,
    ref,
    spec,
    stateful_set_of_pod,
)
from policies.view import NODE, POD, STATEFUL_SET


def _exempt(review: Review, pod: Mapping[str, Any]) -> bool:
    """Who may remove a set pod at once: the kubelet finishing a graceful delete, Kubernetes'
    controllers, break-glass identities, anyone for a pod of a fenced node, and anyone for a
    pod annotated for it where annotations count."""
    user = review.request.user_info
    node = spec(pod).get("nodeName")
    if user.username == f"system:node:{node}" and metadata(pod).get("deletionTimestamp"):
        return True  # the kubelet's final delete after the containers stopped
    if is_kubernetes_controller(user.username):
        return True
    if review.config.is_break_glass(user.username, user.groups):
        return True
    if _fenced(review, node):
        return True
    return break_glass.annotated(review, pod, break_glass.FORCE_DELETE)


def _fenced(review: Review, node: object) -> bool:
    """The pod's node is known to run nothing: its Node object is gone (`kubectl delete
    node`), or it carries the out-of-service taint, an operator's statement that it is
    powered off (Kubernetes' non-graceful node shutdown). Then no second copy can run, and
    the force delete is the way to start the replacement."""
    if not node or not review.view.has(NODE):
        return False
    found = review.view.get(NODE, "", str(node))
    if found is None:
        return True
    taints = spec(found).get("taints")
    return any(
        isinstance(t, dict)
        and t.get("key") == OUT_OF_SERVICE_KEY
        and t.get("effect") in ("NoExecute", "NoSchedule")
        for t in taints or []
    )


# Kubernetes' non-graceful node shutdown procedure (GA in 1.28): the operator's statement
# that the node runs nothing, after which the pod garbage collector force-deletes its pods.
OUT_OF_SERVICE_KEY = "node.kubernetes.io/out-of-service"
OUT_OF_SERVICE = f"{OUT_OF_SERVICE_KEY}=nodeshutdown:NoExecute"


def _set_of(review: Review, pod: Mapping[str, Any]) -> str | None:
    """By its own marks first; only a pod with neither is matched by name against the sets."""
    found = stateful_set_of_pod(pod)
    if found is not None:
        return found
    return stateful_set_of_pod(pod, review.view.list(STATEFUL_SET, review.namespace))


def _removal(review: Review, pod: Mapping[str, Any], grace: object, *, eviction: bool) -> Result:
    """A DELETE or an Eviction of `pod` with this grace period."""
    if grace != 0 or not is_running(pod):
        return Result.allow()  # graceful, or nothing runs that could run twice
    set_name = _set_of(review, pod)
    if set_name is None or _exempt(review, pod):
        return Result.allow()
    namespace, pod_name = review.namespace, review.request.object_name
    claims = claim_names_of_pod(pod)
    still = f"still writes to {' and '.join(claims)}" if claims else "still runs"
    if eviction:
        how = "an eviction with grace period 0 (kubectl drain --grace-period=0)"
        fix = "Drain without --grace-period=0 (the eviction then waits for the pod to stop)"
        short_fix = "drain without --grace-period=0"
    else:
        how = "force deletion (grace period 0)"
        fix = "Delete without --force"
        short_fix = "delete without --force"
    node = spec(pod).get("nodeName")  # a running pod has one
    # What the view knows of the node: its kubelet not reporting is when people reach for
    # --force, and when the out-of-service procedure is the way.
    unreachable = (
        review.view.has(NODE) and ready_condition(review.view.get(NODE, "", str(node))) is False
    )
    down = f"Node {node} is not Ready: if it is down" if unreachable else f"If node {node} is down"
    return Result.deny(
        f"pod {namespace}/{pod_name} belongs to StatefulSet {set_name}; {how} can start a "
        f"second {pod_name} while the first {still}. {fix}. {down}, confirm "
        f"it is powered off, then `kubectl taint nodes {node} {OUT_OF_SERVICE}` (Kubernetes "
        "then deletes its pods safely); to force-delete this one pod anyway, "
        f"{_way_past(review, pod_name)}.",
        short=f"pod {namespace}/{pod_name} of StatefulSet {set_name} with grace period 0; "
        f"{short_fix}",
    )


def _eviction(review: Review) -> Result:
    request = review.request
    options = (request.object or {}).get("deleteOptions")
    grace = options.get("gracePeriodSeconds") if isinstance(options, dict) else None
    if grace != 0:
        return Result.allow()  # the pod's own grace period: the kubelet stops it first
    owner = ref("pod", request.namespace, request.object_name)
    if not review.view.has(POD):
        return Result.cannot_decide(
            f"{owner}: eviction with grace period 0, and the cluster view has no pods to tell "
            "whether it belongs to a StatefulSet",
            short=f"{owner}: eviction with grace 0 of a pod unknown to the view",
        )
    pod = review.view.get(POD, request.namespace, request.object_name)
    if pod is None:
        return Result.allow()  # nothing to evict: the API server answers 404
    return _removal(review, pod, grace, eviction=True)


def _relabel(review: Review) -> Result:
    """A pods UPDATE: the pod-name label is what routes a set pod's deletes to us."""
    request = review.request
    old, new = request.old_object, request.object
    before = labels(old).get(POD_NAME_LABEL)
    if before is None or labels(new).get(POD_NAME_LABEL) == before or not is_running(old):
        return Result.allow()
    if old is None or _exempt(review, old):
        return Result.allow()
    owner = ref("pod", request.namespace, request.object_name)
    return Result.deny(
        f"{owner}: removing or changing its label {POD_NAME_LABEL} while it runs hides a "
        "StatefulSet pod from the force-delete guard (the webhook selects pods by it). Keep "
        f"the label; to force-delete this one pod, {_way_past(review, request.object_name)}.",
        short=f"{owner}: keep label {POD_NAME_LABEL} on a running StatefulSet pod",
    )


def _way_past(review: Review, pod: str) -> str:
    return break_glass.way_past(
        review, "force-delete", "pod", pod, annotate=f"it {break_glass.FORCE_DELETE}"
    )


def validate(review: Review) -> Result:
    request = review.request
    if request.resource.resource == "statefulsets":
        return break_glass.in_templates(review, break_glass.FORCE_DELETE)
    if request.sub_resource == "eviction":
        return _eviction(review)
    if request.operation == "UPDATE":
        return _relabel(review)
    pod = request.old_object
    if pod is None:
        return Result.cannot_decide(
            f"pod {request.namespace}/{request.object_name}: the request carries no oldObject",
        )
    return _removal(review, pod, (request.options or {}).get("gracePeriodSeconds"), eviction=False)


POLICY = Policy(
    id="force-delete",
    rationale="A force-deleted StatefulSet pod can run twice and corrupt its volume.",
    matches=(
        Match(group="", resource="pods", operations=frozenset({"DELETE", "UPDATE"})),
        Match(group="", resource="pods", operations=frozenset({"CREATE"}), subresource="eviction"),
        Match(group="apps", resource="statefulsets", operations=frozenset({"CREATE", "UPDATE"})),
    ),
    validate=validate,
    default_failure_mode=FailureMode.CLOSED,
    guards_data=True,
)
