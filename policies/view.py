"""The read-only view of the cluster that policies consult (never an API call of their own).

The webhook feeds it from a list+watch cache or from manifests; tests and audits from
manifests. Objects are the plain dicts the API server serves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from policies.objects import annotations_of, metadata, name_of

SERVICE = "Service"
STORAGE_CLASS = "StorageClass"
STATEFUL_SET = "StatefulSet"
CLAIM = "PersistentVolumeClaim"
NAMESPACE = "Namespace"
DISRUPTION_BUDGET = "PodDisruptionBudget"
POD = "Pod"
DEPLOYMENT = "Deployment"
REPLICA_SET = "ReplicaSet"
NODE = "Node"
GUARD_EXCEPTION = "GuardException"  # stateful-guard.io/v1alpha1 (policies.exceptions)

KINDS = (
    SERVICE,
    STORAGE_CLASS,
    STATEFUL_SET,
    CLAIM,
    NAMESPACE,
    DISRUPTION_BUDGET,
    POD,
    DEPLOYMENT,
    REPLICA_SET,
    NODE,
    GUARD_EXCEPTION,
)
CLUSTER_SCOPED = frozenset({STORAGE_CLASS, NAMESPACE, NODE})
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


class ClusterView(Protocol):
    def has(self, kind: str) -> bool:
        """Whether the view knows every object of this kind (an absence then means absent)."""
        ...

    def get(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def list(self, kind: str, namespace: str | None = None) -> Iterable[Mapping[str, Any]]: ...

    def default_storage_class(self) -> Mapping[str, Any] | None: ...

    def namespace_labels(self, namespace: str) -> Mapping[str, str]: ...


def choose_default_storage_class(
    classes: Iterable[Mapping[str, Any]],
) -> Mapping[str, Any] | None:
    """The class the API server would default to: with several marked default, the newest.

    Kubernetes >= 1.26 picks the most recently created default class (KEP-3333).
    """
    defaults = [c for c in classes if annotations_of(c).get(DEFAULT_CLASS_ANNOTATION) == "true"]
    if not defaults:
        return None
    return max(
        defaults,
        key=lambda c: (str(metadata(c).get("creationTimestamp", "")), name_of(c)),
    )
