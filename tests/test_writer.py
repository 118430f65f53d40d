"""The cluster writes: a managed Service or budget lands in its set's namespace, whatever its
manifest says, owned by the set, and never over an existing one; only managed ones are ever
changed or deleted, each by its uid."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from policies.headless_service import service_for
from policies.quorum_profile import budget_for
from tests.support import example
from webhook.cluster.writer import ClusterWriter


class RecordingCore:
    def __init__(self, *, exists: bool = False) -> None:
        self.exists = exists
        self.calls: list[tuple[str, str, Any]] = []

    def create_namespaced_service(self, namespace: str, body: Any) -> None:
        self.calls.append(("create", namespace, body))
        if self.exists:
            raise k8s.ApiException(status=409, reason="AlreadyExists")

    def delete_namespaced_service(self, name: str, namespace: str, body: Any) -> None:
        self.calls.append(("delete", f"{namespace}/{name}", body))

    def patch_namespaced_service(self, name: str, namespace: str, body: Any, **kw: Any) -> None:
        self.calls.append(("patch", f"{namespace}/{name}", (body, kw)))

    # policy/v1, same recorder
    def create_namespaced_pod_disruption_budget(self, namespace: str, body: Any) -> None:
        self.create_namespaced_service(namespace, body)

    def patch_namespaced_pod_disruption_budget(self, name: str, namespace: str, body: Any) -> None:
        self.calls.append(("patch", f"{namespace}/{name}", body))

    def delete_namespaced_pod_disruption_budget(self, name: str, namespace: str, body: Any) -> None:
        self.calls.append(("delete-pdb", f"{namespace}/{name}", body))


def writer(core: RecordingCore) -> ClusterWriter:
    created = ClusterWriter(k8s.ApiClient())
    created.core = core  # type: ignore[assignment]
    created.policy = core  # type: ignore[assignment]
    return created


def stored_set() -> dict[str, Any]:
    stateful_set = example("mysql-replicated.yaml", "StatefulSet")
    stateful_set["metadata"].update(namespace="db", uid="set-uid")
    return stateful_set


def service(namespace: str) -> dict[str, Any]:
    return service_for(example("mysql-replicated.yaml", "StatefulSet"), "mysql", namespace)


def test_created_in_the_sets_namespace_only_and_owned_by_it() -> None:
    core = RecordingCore()
    assert writer(core).create(service("kube-system"), stored_set()) == "created"
    [(verb, namespace, body)] = core.calls
    assert (verb, namespace, body["metadata"]["namespace"]) == ("create", "db", "db")
    [owner] = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("StatefulSet", "mysql", "set-uid")


def test_never_over_an_existing_service() -> None:
    core = RecordingCore(exists=True)
    assert writer(core).create(service("db"), stored_set()) == "exists"
    assert [c[0] for c in core.calls] == ["create"], "a create, never an update or apply"


def test_only_managed_services_are_deleted() -> None:
    core = RecordingCore()
    managed = service_for(example("mysql-replicated.yaml", "StatefulSet"), "mysql", "db")
    managed["metadata"]["uid"] = "u1"
    writer(core).delete("Service", managed)
    assert core.calls[0][:2] == ("delete", "db/mysql")
    assert core.calls[0][2].preconditions.uid == "u1", "only that very Service"
    mine = {"metadata": {"name": "mine", "namespace": "db", "uid": "u2", "labels": {}}}
    for kind in ("Service", "PodDisruptionBudget"):
        with pytest.raises(ValueError, match="unmanaged"):
            writer(core).delete(kind, mine)
    with pytest.raises(ValueError, match="unmanaged"):
        writer(core).replace_budget_spec(mine, {"maxUnavailable": 1})
    with pytest.raises(ValueError, match="unmanaged"):
        writer(core).create(mine, stored_set())
    assert len(core.calls) == 1


def test_adopting_sends_a_merge_patch() -> None:
    """The client sends a JSON patch unless told: a dict body must say merge patch."""
    core = RecordingCore()
    managed = service("db")
    managed["metadata"]["uid"] = "u1"
    writer(core).adopt(managed, stored_set())
    [(verb, _, (body, options))] = core.calls
    assert verb == "patch"
    assert options == {"_content_type": "application/merge-patch+json"}
    assert body["metadata"]["ownerReferences"][0]["uid"] == "set-uid"


def test_a_quorum_budget_is_made_owned_and_patched_by_its_uid() -> None:
    core = RecordingCore()
    stateful_set = stored_set()
    stateful_set["metadata"]["annotations"] = {"stateful-guard.io/min-replicas": "2"}
    desired = budget_for(stateful_set)
    assert desired is not None
    assert writer(core).create(desired, stateful_set) == "created"
    [(verb, namespace, body)] = core.calls
    assert (verb, namespace, body["metadata"]["namespace"]) == ("create", "db", "db")
    assert body["metadata"]["ownerReferences"][0]["uid"] == "set-uid"
    body["metadata"]["uid"] = "pdb-uid"
    writer(core).replace_budget_spec(body, {**body["spec"], "maxUnavailable": 2})
    _, name, patch = core.calls[1]
    assert name == f"db/{body['metadata']['name']}"
    assert patch[0] == {"op": "test", "path": "/metadata/uid", "value": "pdb-uid"}
    assert patch[1]["path"] == "/metadata/labels/app.kubernetes.io~1managed-by"
    assert patch[2]["op"] == "replace" and patch[2]["value"]["maxUnavailable"] == 2
    writer(core).delete("PodDisruptionBudget", body)
    assert core.calls[2][0] == "delete-pdb" and core.calls[2][2].preconditions.uid == "pdb-uid"


class RecordingAdmission:
    """A ValidatingWebhookConfiguration as the client returns it, and the patches sent."""

    def __init__(self, policies: dict[str, str], annotation: str) -> None:
        self.config = k8s.V1ValidatingWebhookConfiguration(
            metadata=k8s.V1ObjectMeta(
                name="stateful-guard",
                annotations={"stateful-guard.io/fail-closed-once-reached": annotation},
            ),
            webhooks=[
                k8s.V1ValidatingWebhook(
                    name=name,
                    failure_policy=policy,
                    admission_review_versions=["v1"],
                    side_effects="None",
                    client_config=k8s.AdmissionregistrationV1WebhookClientConfig(url="https://x"),
                )
                for name, policy in policies.items()
            ],
        )
        self.patches: list[Any] = []

    def read_validating_webhook_configuration(self, name: str) -> Any:
        return self.config

    def patch_validating_webhook_configuration(self, name: str, body: Any) -> None:
        self.patches.append(body)


def test_fail_closed_turns_only_the_named_webhooks_and_tests_each_name() -> None:
    admission = RecordingAdmission(
        {"pods.x": "Ignore", "workloads.x": "Ignore", "data.x": "Fail"}, "pods.x,data.x"
    )
    created = ClusterWriter(k8s.ApiClient())
    created.admission = admission  # type: ignore[assignment]
    assert created.fail_closed() == ["failurePolicy of pods.x set to Fail"]
    assert admission.patches == [
        [
            {"op": "test", "path": "/webhooks/0/name", "value": "pods.x"},
            {"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Fail"},
        ]
    ]
    admission.config.webhooks[0].failure_policy = "Fail"
    assert created.fail_closed() == [] and len(admission.patches) == 1, "nothing left to do"
