"""The `statefulsets/scale` subresource: how `kubectl scale` and the HPA change replicas.

A scale request arrives as an UPDATE of `apps/v1 statefulsets` with subResource `scale` and
kind `autoscaling/v1 Scale`: `spec.replicas` and nothing else, no labels, no annotations. What
policies need beyond the count (retention policy, quorum annotations) comes from the set in
the cluster view; a set the view does not have cannot be judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.base import Match, Result, Review
from policies.objects import ref
from policies.view import STATEFUL_SET

SCALE = Match(
    group="apps", resource="statefulsets", operations=frozenset({"UPDATE"}), subresource="scale"
)


def is_scale(review: Review) -> bool:
    return review.request.sub_resource == "scale"


def set_of(
    review: Review, *, otherwise: Mapping[str, Any] | None, to_read: str
) -> Mapping[str, Any] | Result | None:
    """The StatefulSet a request is about: for a scale request the set in the view (or, when
    the view lacks it, the undecidable Result naming what could not be read), else
    `otherwise` (the request's object or oldObject)."""
    if not is_scale(review):
        return otherwise
    request = review.request
    found = review.view.get(STATEFUL_SET, request.namespace, request.object_name)
    if found is not None:
        return found
    owner = ref("StatefulSet", request.namespace, request.object_name)
    return Result.cannot_decide(
        f"{owner}: scale request, and the cluster view does not have the set to read {to_read}",
        short=f"{owner}: set unknown to the view, {to_read} unchecked",
    )
