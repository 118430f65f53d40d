"""availability: a set of several members should survive a drain and a node failure.

Rule, on StatefulSet CREATE and UPDATE with more than one replica (warn by default, so each
finding is a warning; in enforce mode they refuse):
- no PodDisruptionBudget (from the cluster view, or the same manifests) selects its pods: a
  drain or an autoscaler may evict several members at once;
- a PodDisruptionBudget that selects its pods allows no disruption (`maxUnavailable: 0`, or
  `minAvailable` of every member): every drain of a node that runs one blocks, and the
  operator ends up deleting the budget by hand (checked for single-member sets too);
- no pod anti-affinity and no topology spread constraint: the scheduler may put every
  member on one node, and one node failure takes them all.

Why: replication only protects data and service when members fail apart. These are the
checks kube-score and Polaris make on workloads; here they read the set's own replicas and
the budgets that actually select its pods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from policies.base import Match, Policy, Result, Review
from policies.modes import Mode
from policies.objects import name_of, pod_template_labels, ref, replicas, selects, spec
from policies.quorum_profile import budget_for
from policies.view import DISRUPTION_BUDGET


def _count(value: object, members: int) -> int | None:
    """A PDB's minAvailable/maxUnavailable as a count of members (percentages round up, as
    the disruption controller rounds them)."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return math.ceil(int(value[:-1]) * members / 100)
    return None


def allowed_disruptions(budget: Mapping[str, Any], members: int) -> int | None:
    """How many of `members` the budget lets go at once, or None when it cannot be read."""
    budget_spec = spec(budget)
    if "maxUnavailable" in budget_spec:
        most = _count(budget_spec["maxUnavailable"], members)
        return None if most is None else max(0, min(most, members))
    least = _count(budget_spec.get("minAvailable", 0), members)  # neither: no limit
    return None if least is None else max(0, members - least)


def _spread(pod: Mapping[str, Any]) -> bool:
    affinity = pod.get("affinity")
    anti = affinity.get("podAntiAffinity") if isinstance(affinity, dict) else None
    if isinstance(anti, dict) and any(anti.get(k) for k in anti):
        return True
    return bool(pod.get("topologySpreadConstraints"))


def validate(review: Review) -> Result:
    obj = review.object
    members = replicas(obj)
    owner = ref("StatefulSet", review.namespace, review.request.object_name)
    result = Result.allow()
    if review.view.has(DISRUPTION_BUDGET) and members > 0:
        pod_labels = pod_template_labels(obj)
        budgets = [
            b
            for b in review.view.list(DISRUPTION_BUDGET, review.namespace)
            if selects(spec(b).get("selector"), pod_labels)
        ]
        for budget in budgets:
            if allowed_disruptions(budget, members) == 0:
                name = name_of(budget)
                result += Result.deny(
                    f"{owner}: PodDisruptionBudget {name} allows no disruption of its "
                    f"{members} member{'s' if members > 1 else ''}, so every drain of a node "
                    "running one blocks; allow one (maxUnavailable: 1).",
                    short=f"{owner}: PDB {name} allows no disruption; drains block "
                    "(use maxUnavailable: 1)",
                )
        # With disruptionBudgets on, the leader gives a quorum set its own budget.
        coming = review.config.disruption_budgets_for(review.namespace) and budget_for(obj or {})
        if not budgets and members > 1 and not coming:
            result += Result.deny(
                f"{owner}: no PodDisruptionBudget selects its {members} members, so a drain "
                "or an autoscaler may evict several at once; add one with maxUnavailable: 1.",
                short=f"{owner}: no PodDisruptionBudget; add one with maxUnavailable: 1",
            )
    template = spec(obj).get("template")
    if members > 1 and not _spread(spec(template if isinstance(template, dict) else None)):
        result += Result.deny(
            f"{owner}: no pod anti-affinity or topology spread, so all {members} members may "
            "run on one node and fail together; spread them over kubernetes.io/hostname.",
            short=f"{owner}: members may share a node; add anti-affinity or topology spread",
        )
    return result


POLICY = Policy(
    id="availability",
    rationale="Members that a drain evicts together, or one node failure stops, fail together.",
    matches=(
        Match(group="apps", resource="statefulsets", operations=frozenset({"CREATE", "UPDATE"})),
    ),
    validate=validate,
    default_mode=Mode.WARN,
)
