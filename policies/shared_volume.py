"""shared-volume: every replica needs a disk of its own.

Rule: a StatefulSet, Deployment or ReplicaSet (CREATE/UPDATE, or its `scale` subresource:
`kubectl scale`, the HPA, read with the workload from the view) with more than one replica
whose pod template mounts a ReadWriteOnce or ReadWriteOncePod claim through a plain
`persistentVolumeClaim` volume is refused. The claim's access modes come from the cluster
view; a claim the view does not know gets a warning, not a guess.

Why: a ReadWriteOnce volume attaches to one node. The second replica either hangs in
ContainerCreating (Multi-Attach error) or, on the same node, opens the same files as the
first: two database processes on one data directory corrupt it. Stateful replicas each
need their own claim: `volumeClaimTemplates`.

ReplicaSets made by the Deployment controller are not judged again (their Deployment was).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.base import Match, Policy, Result, Review
from policies.objects import (
    claim_templates,
    claim_volumes,
    is_kubernetes_controller,
    name_of,
    ref,
    spec,
)
from policies.scale import workload_of
from policies.view import CLAIM, DEPLOYMENT, REPLICA_SET, STATEFUL_SET

SINGLE_WRITER = frozenset({"ReadWriteOnce", "ReadWriteOncePod"})
SHARED = frozenset({"ReadWriteMany", "ReadOnlyMany"})
KINDS = {"statefulsets": STATEFUL_SET, "deployments": DEPLOYMENT, "replicasets": REPLICA_SET}


def _claims(workload: Mapping[str, Any] | None) -> list[str]:
    """The claims every replica mounts: `persistentVolumeClaim` volumes, less those that a
    claim template of the same name replaces (the StatefulSet controller swaps each such
    volume for the pod's own claim, as with the Bitnami charts' `data` emptyDir fallback)."""
    template = spec(workload).get("template")
    own = {name_of(t) for t in claim_templates(workload)}
    pod = spec(template if isinstance(template, dict) else None)
    return [claim for volume, claim in claim_volumes(pod) if volume not in own]


def validate(review: Review) -> Result:
    request = review.request
    count = spec(request.object).get("replicas", 1)
    if not isinstance(count, int) or count <= 1:
        return Result.allow()
    if request.resource.resource == "replicasets" and is_kubernetes_controller(
        request.user_info.username
    ):
        return Result.allow()
    kind = KINDS.get(request.resource.resource, request.kind.kind)
    owner = ref(kind, request.namespace, request.object_name)
    # `kubectl scale deploy/rs/sts` and the HPA send a count, no pod template: what each
    # replica mounts comes from the workload in the view.
    workload = workload_of(review, kind, otherwise=review.object, to_read="its volumes")
    if isinstance(workload, Result):
        return workload
    unknown: list[Result] = []
    for name in dict.fromkeys(_claims(workload)):
        claim = review.view.get(CLAIM, request.namespace, name)
        if claim is None:
            unknown.append(
                Result.warn(
                    f"{owner}: {count} replicas mount claim {name}, which the cluster view does "
                    "not have, so whether they can share it is unknown (a ReadWriteOnce claim "
                    "they cannot). Give each replica its own claim (volumeClaimTemplates), or "
                    "pass the claim to the audit (--objects).",
                    short=f"{owner}: claim {name} unknown to the view; pass it with --objects",
                )
            )
            continue
        modes = set(spec(claim).get("accessModes") or [])
        if modes & SINGLE_WRITER and not modes & SHARED:
            shown = "/".join(sorted(modes & SINGLE_WRITER))
            return Result.merge(unknown) + Result.deny(
                f"{owner}: {count} replicas mount the {shown} claim {name}; it attaches to one "
                "node and one writer, so the others hang or corrupt its data. Give each "
                "replica its own claim (a StatefulSet's volumeClaimTemplates), or run 1 "
                "replica.",
                short=f"{owner}: {count} replicas share {shown} claim {name}; give each its own",
            )
    return Result.merge(unknown)


WORKLOADS = frozenset({"CREATE", "UPDATE"})
UPDATE = frozenset({"UPDATE"})
POLICY = Policy(
    id="shared-volume",
    rationale="Replicas sharing one ReadWriteOnce disk hang or corrupt it.",
    matches=tuple(
        match
        for resource in KINDS
        for match in (
            Match(group="apps", resource=resource, operations=WORKLOADS),
            Match(group="apps", resource=resource, operations=UPDATE, subresource="scale"),
        )
    ),
    validate=validate,
)
