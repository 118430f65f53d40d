"""The only writes stateful-guard makes to the cluster: managed headless Services.

Created in the request's namespace only and never over an existing Service (a create, not an
apply: an existing one answers 409 and is left alone); adopted by their StatefulSet through an
ownerReference (so the garbage collector removes them with it); deleted only when they carry
our managed-by label and the set they were made for never appeared. Calls block: run them in a
thread.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client as k8s

from policies.base import Create
from policies.headless_service import MANAGED_BY

log = logging.getLogger("stateful_guard.writer")


class ClusterWriter:
    def __init__(self, api: k8s.ApiClient) -> None:
        self.core = k8s.CoreV1Api(api)

    def create(self, effect: Create, namespace: str) -> str:
        """Perform a side effect in `namespace`; returns what happened: created or exists."""
        obj = copy.deepcopy(effect.object)
        if obj.get("kind") != "Service":
            raise ValueError(f"unsupported side effect: {obj.get('kind')}")
        obj["metadata"]["namespace"] = namespace  # the request's namespace, whatever it says
        try:
            # The client sends a plain dict as it is; no round trip through its models.
            self.core.create_namespaced_service(namespace, cast("k8s.V1Service", obj))
        except k8s.ApiException as exc:
            if exc.status == 409:
                return "exists"
            raise
        return "created"

    def adopt(self, service: Mapping[str, Any], stateful_set: Mapping[str, Any]) -> None:
        meta, owner = service["metadata"], stateful_set["metadata"]
        reference = {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "name": owner["name"],
            "uid": owner["uid"],
            "controller": False,
            "blockOwnerDeletion": False,
        }
        self.core.patch_namespaced_service(
            meta["name"],
            meta["namespace"],
            {"metadata": {"ownerReferences": [reference], "uid": meta["uid"]}},
        )

    def delete(self, service: Mapping[str, Any]) -> None:
        meta = service["metadata"]
        if {k: meta.get("labels", {}).get(k) for k in MANAGED_BY} != MANAGED_BY:
            raise ValueError(f"refusing to delete unmanaged Service {meta['name']}")
        self.core.delete_namespaced_service(
            meta["name"],
            meta["namespace"],
            body=k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=meta["uid"])),
        )
