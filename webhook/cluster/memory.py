"""Cluster views the webhook can serve policies from.

`MemoryView` holds objects loaded from manifests (`--objects`, audits, tests). With no
objects at all the view is empty and knows nothing, so policies that need the cluster let
their failure mode decide instead of treating "absent" as fact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from policies.view import (
    CLUSTER_SCOPED,
    KINDS,
    NAMESPACE,
    STORAGE_CLASS,
    choose_default_storage_class,
)

_Key = tuple[str, str]  # (namespace, name)


class MemoryView:
    """An in-memory, read-only cluster view of the kinds policies read."""

    def __init__(
        self,
        objects: Iterable[Mapping[str, Any]] = (),
        *,
        complete: bool = True,
        default_namespace: str = "default",
    ):
        self._objects: dict[str, dict[_Key, Mapping[str, Any]]] = {kind: {} for kind in KINDS}
        for obj in objects:
            kind = obj.get("kind")
            if kind in self._objects:
                meta = obj.get("metadata") or {}
                # A manifest without a namespace lands in the default one, as with kubectl.
                namespace = (
                    ""
                    if kind in CLUSTER_SCOPED
                    else str(meta.get("namespace") or default_namespace)
                )
                self._objects[kind][(namespace, str(meta.get("name") or ""))] = obj
        self._complete = complete
        self._default_class = choose_default_storage_class(self._objects[STORAGE_CLASS].values())

    @classmethod
    def empty(cls) -> MemoryView:
        """A view that knows nothing (no cluster and no manifests)."""
        return cls((), complete=False)

    @property
    def complete(self) -> bool:
        return self._complete

    def has(self, kind: str) -> bool:
        """Manifests describe the application whole (its Services, sets, claims), but name the
        cluster's StorageClasses and Namespaces only when given them (`--objects`)."""
        if not self._complete or kind not in self._objects:
            return False
        return kind not in CLUSTER_SCOPED or bool(self._objects[kind])

    def get(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._objects.get(kind, {}).get((namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> Iterable[Mapping[str, Any]]:
        objects = self._objects.get(kind, {})
        if namespace is None:
            return list(objects.values())
        return [obj for (ns, _), obj in objects.items() if ns == namespace]

    def default_storage_class(self) -> Mapping[str, Any] | None:
        return self._default_class

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        obj = self._objects[NAMESPACE].get(("", namespace))
        labels = (obj or {}).get("metadata", {}).get("labels")
        return labels if isinstance(labels, dict) else {}  # (an ABC check costs 10x)

    def __len__(self) -> int:
        return sum(len(objects) for objects in self._objects.values())
