"""The scale subresource: how `kubectl scale` and the HPA change replicas.

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


def workload_of(
    review: Review, kind: str, *, otherwise: Mapping[str, Any] | None, to_read: str
) -> Mapping[str, Any] | Result | None:
    """The workload a request is about: for a scale request the `kind` object of that name
    in the view (or, when the view lacks it, the undecidable Result naming what could not be
    read), else `otherwise` (the request's object or oldObject)."""
    if not is_scale(review):
        return otherwise
    request = review.request
    found = review.view.get(kind, request.namespace, request.object_name)
    if found is not None:
        return found
    owner = ref(kind, request.namespace, request.object_name)
    noun = "set" if kind == STATEFUL_SET else kind
    return Result.cannot_decide(
        f"{owner}: scale request, and the cluster view does not have the {noun} to read {to_read}",
        short=f"{owner}: {noun} unknown to the view, {to_read} unchecked",
    )


def set_of(
    review: Review, *, otherwise: Mapping[str, Any] | None, to_read: str
) -> Mapping[str, Any] | Result | None:
    """`workload_of` for a StatefulSet (`statefulsets/scale`)."""
    return workload_of(review, STATEFUL_SET, otherwise=otherwise, to_read=to_read)
