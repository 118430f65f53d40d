"""quorum: do not scale a consensus cluster below its quorum, or down too fast.

Rule: a StatefulSet UPDATE or `statefulsets/scale` UPDATE that lowers the replica count is
refused when the new count is below `stateful-guard.io/min-replicas`, or when it removes
more than `stateful-guard.io/max-scale-down` members at once. Scaling up is always allowed.

Why: ZooKeeper, etcd, Kafka's KRaft controllers and Cassandra with QUORUM reads need a
majority of their members. Scaling a 5-member ensemble to 2 loses the majority at once; even
a legal target reached in one step removes members faster than data can re-replicate.

`kubectl scale` and the HorizontalPodAutoscaler use the scale subresource, which carries no
annotations: they are read from the set in the cluster view, and a set the view does not
know is decided by the failure mode (closed).
"""

from __future__ import annotations

from policies.base import FailureMode, Match, Policy, Result, Review
from policies.objects import int_annotation, ref, replicas
from policies.scale import SCALE, set_of

MIN_REPLICAS = "stateful-guard.io/min-replicas"
MAX_SCALE_DOWN = "stateful-guard.io/max-scale-down"


def validate(review: Review) -> Result:
    request = review.request
    old, new = replicas(request.old_object), replicas(request.object)
    if new >= old:
        return Result.allow()
    owner = ref("StatefulSet", request.namespace, request.object_name)
    stateful_set = set_of(review, otherwise=request.object, to_read="its quorum annotations")
    if isinstance(stateful_set, Result):
        return stateful_set
    minimum = int_annotation(stateful_set, MIN_REPLICAS)
    step = int_annotation(stateful_set, MAX_SCALE_DOWN)
    for key, value in ((MIN_REPLICAS, minimum), (MAX_SCALE_DOWN, step)):
        if isinstance(value, str):
            return Result.deny(
                f"{owner}: annotation {key}={value!r} is not a whole number, so the quorum "
                "cannot be checked. Fix the annotation.",
                short=f"{owner}: {key}={value!r} is not a whole number",
            )
    if isinstance(minimum, int) and new < minimum:
        return Result.deny(
            f"{owner}: scaling from {old} to {new} goes below {MIN_REPLICAS}={minimum}; the "
            f"cluster would lose its quorum. Keep at least {minimum} replicas, or lower the "
            "annotation if the cluster really can run smaller.",
            short=f"{owner}: {old}->{new} is below {MIN_REPLICAS}={minimum}",
        )
    if isinstance(step, int) and old - new > step:
        return Result.deny(
            f"{owner}: scaling from {old} to {new} removes {old - new} members at once, more "
            f"than {MAX_SCALE_DOWN}={step}. Scale down in steps of at most {step}, letting "
            "the cluster settle in between.",
            short=f"{owner}: {old}->{new} removes more than {MAX_SCALE_DOWN}={step}",
        )
    return Result.allow()


POLICY = Policy(
    id="quorum",
    rationale="Scaling a consensus cluster below its majority takes it down.",
    matches=(
        Match(group="apps", resource="statefulsets", operations=frozenset({"UPDATE"})),
        SCALE,
    ),
    validate=validate,
    default_failure_mode=FailureMode.CLOSED,
)
