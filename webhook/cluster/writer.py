"""The only writes stateful-guard makes to the cluster's objects: managed headless Services
and quorum PodDisruptionBudgets, by the Lease leader (`webhook/cluster/reconcile.py`).

Created in their set's namespace only, owned by the set (so the garbage collector removes
them with it), and never over an existing object (a create, not an apply: an existing one
answers 409 and is left alone); changed or deleted only when they carry our managed-by
label, with the uid as precondition. The ServiceAccount may write no other Service or
budget: a ValidatingAdmissionPolicy in deploy/ holds it to that. Calls block: run them in a
thread.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client as k8s

from policies.objects import is_managed

log = logging.getLogger("stateful_guard.writer")


WEBHOOK_CONFIGURATION = "stateful-guard"  # as deploy/ and the chart name it
MUTATING_WEBHOOK = "mutate.stateful-guard.io"
# On our ValidatingWebhookConfiguration: the webhooks shipped `Ignore` that become `Fail` once
# the API server has reached us (so an install whose pods never serve locks nothing out).
FAIL_CLOSED_ANNOTATION = "stateful-guard.io/fail-closed-once-reached"


def _reference(stateful_set: Mapping[str, Any]) -> dict[str, Any]:
    owner = stateful_set["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": owner["name"],
        "uid": owner["uid"],
        "controller": False,
        "blockOwnerDeletion": False,
    }


class ClusterWriter:
    def __init__(self, api: k8s.ApiClient) -> None:
        self.core = k8s.CoreV1Api(api)
        self.policy = k8s.PolicyV1Api(api)
        self.admission = k8s.AdmissionregistrationV1Api(api)

    def create(self, obj: Mapping[str, Any], owner: Mapping[str, Any]) -> str:
        """Create a managed Service or PodDisruptionBudget in its owner's namespace; returns
        what happened: created or exists."""
        body = copy.deepcopy(dict(obj))
        if not is_managed(body):
            raise ValueError(f"refusing to create unmanaged {body.get('kind')}")
        namespace = owner["metadata"]["namespace"]
        body["metadata"]["namespace"] = namespace  # the set's namespace, whatever it says
        body["metadata"]["ownerReferences"] = [_reference(owner)]
        try:
            # The client sends a plain dict as it is; no round trip through its models.
            if body.get("kind") == "Service":
                self.core.create_namespaced_service(namespace, cast("k8s.V1Service", body))
            elif body.get("kind") == "PodDisruptionBudget":
                self.policy.create_namespaced_pod_disruption_budget(
                    namespace, cast("k8s.V1PodDisruptionBudget", body)
                )
            else:
                raise ValueError(f"unsupported object: {body.get('kind')}")
        except k8s.ApiException as exc:
            if exc.status == 409:
                return "exists"
            raise
        return "created"

    def replace_budget_spec(self, budget: Mapping[str, Any], new_spec: Mapping[str, Any]) -> None:
        """Give a managed PodDisruptionBudget a new spec (a JSON patch that first tests the uid
        and the label, so a budget replaced or taken over meanwhile is left alone)."""
        meta = _ours(budget)
        self.policy.patch_namespaced_pod_disruption_budget(
            meta["name"],
            meta["namespace"],
            [
                {"op": "test", "path": "/metadata/uid", "value": meta["uid"]},
                *(
                    {"op": "test", "path": f"/metadata/labels/{k.replace('/', '~1')}", "value": v}
                    for k, v in meta["labels"].items()
                    if k == "app.kubernetes.io/managed-by"
                ),
                {"op": "replace", "path": "/spec", "value": dict(new_spec)},
            ],
        )

    def fail_closed(self) -> list[str]:
        """Turn the webhooks our ValidatingWebhookConfiguration names in its annotation from
        `Ignore` to `Fail`; returns what it changed. Each change tests the webhook's name at
        its index first, so a configuration edited meanwhile is left alone."""
        config = self.admission.read_validating_webhook_configuration(WEBHOOK_CONFIGURATION)
        notes = (config.metadata.annotations or {}) if config.metadata else {}
        wanted = {n.strip() for n in str(notes.get(FAIL_CLOSED_ANNOTATION, "")).split(",")}
        patch: list[dict[str, Any]] = []
        changed = []
        for index, hook in enumerate(config.webhooks or []):
            if hook.name in wanted and hook.failure_policy != "Fail":
                patch.append({"op": "test", "path": f"/webhooks/{index}/name", "value": hook.name})
                patch.append(
                    {"op": "replace", "path": f"/webhooks/{index}/failurePolicy", "value": "Fail"}
                )
                changed.append(f"failurePolicy of {hook.name} set to Fail")
        if patch:
            self.admission.patch_validating_webhook_configuration(WEBHOOK_CONFIGURATION, patch)
        return changed

    def mutating_namespace_selector(self) -> dict[str, Any] | None:
        """The namespaceSelector of our mutating webhook (which namespaces we guard), or None
        when the configuration cannot be read."""
        try:
            config = self.admission.read_mutating_webhook_configuration(WEBHOOK_CONFIGURATION)
        except k8s.ApiException as exc:
            log.warning(
                "cannot read the MutatingWebhookConfiguration; creating no Services",
                extra={"name": WEBHOOK_CONFIGURATION, "status": exc.status},
            )
            return None
        for hook in config.webhooks or []:
            if hook.name == MUTATING_WEBHOOK:
                selector = hook.namespace_selector
                return self.core.api_client.sanitize_for_serialization(selector) or {}
        return None

    def adopt(self, service: Mapping[str, Any], stateful_set: Mapping[str, Any]) -> None:
        meta = service["metadata"]
        self.core.patch_namespaced_service(
            meta["name"],
            meta["namespace"],
            {"metadata": {"ownerReferences": [_reference(stateful_set)], "uid": meta["uid"]}},
            # a dict is not a JSON patch, which the client sends by default
            _content_type="application/merge-patch+json",
        )

    def delete(self, kind: str, obj: Mapping[str, Any]) -> None:
        """Delete a managed Service or PodDisruptionBudget (the uid as precondition)."""
        meta = _ours(obj)
        options = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=meta["uid"]))
        if kind == "Service":
            self.core.delete_namespaced_service(meta["name"], meta["namespace"], body=options)
        elif kind == "PodDisruptionBudget":
            self.policy.delete_namespaced_pod_disruption_budget(
                meta["name"], meta["namespace"], body=options
            )
        else:
            raise ValueError(f"unsupported object: {kind}")


def _ours(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta: Mapping[str, Any] = obj["metadata"]
    if not is_managed(obj):
        raise ValueError(f"refusing to change unmanaged object {meta['name']}")
    return meta
