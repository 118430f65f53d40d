"""The namespace-scoped opt-in install, through a real API server: what it stored and refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.e2e.cluster import Cluster, Install, headless_service, message, statefulset, wait_for


def bind(cluster: Cluster, namespace: str, pod: str, node: str = "e2e-node-1") -> None:
    """Schedule a pod as a scheduler would, with a Binding; where the cluster has a real
    scheduler (kind), wait for it instead."""
    if not cluster.core.read_namespaced_pod(pod, namespace).spec.node_name:
        try:
            cluster.core.create_namespaced_pod_binding(
                pod,
                namespace,
                {
                    "metadata": {"name": pod},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                },
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 409:  # the scheduler was first
                raise
    wait_for(
        lambda: cluster.core.read_namespaced_pod(pod, namespace).spec.node_name,
        what=f"{pod} scheduled",
    )


def scheduled_set_pod(cluster: Cluster, namespace: str, name: str = "web") -> str:
    """A pod made by the StatefulSet controller for a set with its headless Service, bound."""
    cluster.core.create_namespaced_service(namespace, headless_service(name, name))
    cluster.apps.create_namespaced_stateful_set(
        namespace, statefulset(name, service_name=name, replicas=1)
    )
    pod = f"{name}-0"
    wait_for(lambda: cluster.core.read_namespaced_pod(pod, namespace), what=f"pod {pod}")
    bind(cluster, namespace, pod)
    return pod


def test_statefulset_stored_with_service_name_and_storage_class(
    cluster: Cluster, namespaced: Install, default_class: str
) -> None:
    ns = cluster.namespace(mode="enforce")
    cluster.apps.create_namespaced_stateful_set(ns, statefulset("kafka"))
    stored = cluster.apps.read_namespaced_stateful_set("kafka", ns)
    assert stored.spec.service_name == "kafka"
    # left to the cluster: the claims get the default class, the template stays as sent
    assert stored.spec.volume_claim_templates[0].spec.storage_class_name is None


def test_static_binding_class_left_alone(cluster: Cluster, namespaced: Install) -> None:
    ns = cluster.namespace(mode="enforce")
    cluster.apps.create_namespaced_stateful_set(
        ns, statefulset("nfs", service_name="nfs", storage_class="")
    )
    stored = cluster.apps.read_namespaced_stateful_set("nfs", ns)
    assert stored.spec.volume_claim_templates[0].spec.storage_class_name == ""


def test_dry_run_returns_the_patched_object_and_stores_nothing(
    cluster: Cluster, namespaced: Install, default_class: str
) -> None:
    ns = cluster.namespace(mode="enforce")
    answer = cluster.apps.create_namespaced_stateful_set(ns, statefulset("zk"), dry_run="All")
    assert answer.spec.service_name == "zk"
    assert answer.spec.volume_claim_templates[0].spec.storage_class_name is None
    assert cluster.apps.list_namespaced_stateful_set(ns).items == []
    assert cluster.core.list_namespaced_service(ns).items == []


def test_unknown_storage_class_warned(cluster: Cluster, namespaced: Install) -> None:
    """A class that does not exist (yet) is a warning: it may come in the same apply."""
    ns = cluster.namespace(mode="enforce")
    _, _, headers = cluster.apps.create_namespaced_stateful_set_with_http_info(
        ns, statefulset("web", service_name="web", storage_class="my-storage-class")
    )
    assert "StorageClass my-storage-class does not exist" in str(headers.get("Warning"))
    assert [s.metadata.name for s in cluster.apps.list_namespaced_stateful_set(ns).items] == ["web"]


def refusal(create: Callable[[], object]) -> ApiException:
    """The refusal of a (dry-run) create, retried while the webhook's watch catches up."""

    def attempt() -> ApiException | None:
        try:
            create()
        except ApiException as exc:
            return exc
        return None

    return wait_for(attempt, timeout=15, what="a refusal")  # type: ignore[no-any-return]


def test_non_headless_service_warned(cluster: Cluster, namespaced: Install) -> None:
    """A plain ClusterIP governing Service: a warning with the fix, never a refusal."""
    ns = cluster.namespace(mode="enforce")
    service = headless_service("web", "web")
    del service["spec"]["clusterIP"]
    cluster.core.create_namespaced_service(ns, service)

    def warned() -> str:
        _, _, headers = cluster.apps.create_namespaced_stateful_set_with_http_info(
            ns, statefulset("web", service_name="web"), dry_run="All"
        )
        found = str(headers.get("Warning", ""))
        return found if "is not headless" in found else ""

    assert f"[headless-service] StatefulSet {ns}/web: Service {ns}/web is not headless" in (
        wait_for(warned, timeout=15, what="the warning")
    )


def test_force_delete_of_a_scheduled_statefulset_pod_refused(
    cluster: Cluster, namespaced: Install
) -> None:
    ns = cluster.namespace(mode="enforce")
    pod = scheduled_set_pod(cluster, ns)
    node = cluster.core.read_namespaced_pod(pod, ns).spec.node_name
    with pytest.raises(ApiException) as refused:
        cluster.core.delete_namespaced_pod(pod, ns, grace_period_seconds=0)
    assert refused.value.status == 403
    assert (
        'admission webhook "pods.stateful-guard.io" denied the request: [force-delete] '
        f"pod {ns}/{pod} belongs to StatefulSet web; force deletion (grace period 0) can "
        f"start a second {pod} while the first still writes to data-{pod}. Delete without "
        f"--force. If node {node} is down, confirm it is powered off, then `kubectl taint "
        f"nodes {node} node.kubernetes.io/out-of-service=nodeshutdown:NoExecute` (Kubernetes "
        "then deletes its pods safely); to force-delete this one pod anyway, have an exception "
        f"writer run `stateful-guard exception create --policy force-delete --pod {ns}/{pod} "
        "--for 1h --reason <why>`."
    ) in message(refused.value)
    assert cluster.core.read_namespaced_pod(pod, ns).metadata.deletion_timestamp is None

    cluster.core.delete_namespaced_pod(pod, ns)  # graceful: the pod's own 30 s
    stored = cluster.core.read_namespaced_pod(pod, ns)
    assert stored.metadata.deletion_timestamp is not None, "graceful delete proceeds"
    assert stored.metadata.deletion_grace_period_seconds == 30


def test_a_break_glass_annotation_does_nothing_in_the_shipped_configuration(
    cluster: Cluster, namespaced: Install
) -> None:
    """breakGlass.annotations is off unless configured: GuardExceptions are the way past."""
    ns = cluster.namespace(mode="enforce")
    pod = scheduled_set_pod(cluster, ns)
    cluster.core.patch_namespaced_pod(
        pod,
        ns,
        {
            "metadata": {
                "annotations": {
                    "stateful-guard.io/allow-force-delete": "node e2e-node-1 is gone (INC-1)"
                }
            }
        },
    )
    with pytest.raises(ApiException) as refused:
        cluster.core.delete_namespaced_pod(pod, ns, grace_period_seconds=0)
    assert refused.value.status == 403
    assert "stateful-guard exception create" in message(refused.value)


def test_deployment_pod_force_delete_proceeds(cluster: Cluster, namespaced: Install) -> None:
    ns = cluster.namespace(mode="enforce")
    cluster.apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "frontend"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "frontend"}},
                "template": {
                    "metadata": {"labels": {"app": "frontend"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        },
    )
    pod = wait_for(lambda: cluster.core.list_namespaced_pod(ns).items, what="deployment pod")[0]
    bind(cluster, ns, pod.metadata.name)
    force_delete(cluster, ns, pod.metadata.name)


def test_unlabelled_namespace_untouched(
    cluster: Cluster, namespaced: Install, default_class: str
) -> None:
    ns = cluster.namespace(mode=None)
    cluster.apps.create_namespaced_stateful_set(
        ns, statefulset("web", service_name="web", storage_class="my-storage-class")
    )
    stored = cluster.apps.read_namespaced_stateful_set("web", ns)
    assert stored.spec.volume_claim_templates[0].spec.storage_class_name == "my-storage-class"
    cluster.apps.create_namespaced_stateful_set(ns, statefulset("db", service_name="db"))
    stored = cluster.apps.read_namespaced_stateful_set("db", ns)
    assert stored.spec.volume_claim_templates[0].spec.storage_class_name is None
    pod = "web-0"
    wait_for(lambda: cluster.core.read_namespaced_pod(pod, ns), what=pod)
    bind(cluster, ns, pod)
    force_delete(cluster, ns, pod)


def test_warn_namespace_allows_with_warnings_and_no_mutation(
    cluster: Cluster, namespaced: Install
) -> None:
    ns = cluster.namespace(mode="warn")
    created, _, headers = cluster.apps.create_namespaced_stateful_set_with_http_info(
        ns, statefulset("cache", service_name="")
    )
    assert created.spec.service_name in ("", None), "warn mode mutates nothing"
    assert "[headless-service] would set spec.serviceName to cache" in warnings(headers)
    pod = scheduled_set_pod(cluster, ns)
    assert (
        f"[force-delete] would deny: pod {ns}/{pod} of StatefulSet web with grace period 0;"
        " delete without --force"
    ) in warnings(force_delete(cluster, ns, pod))


def warnings(headers: Any) -> str:
    """The API server's `Warning: 299 - "..."` headers, joined."""
    values = (
        headers.getlist("Warning")
        if hasattr(headers, "getlist")
        else [v for k, v in (headers or {}).items() if k.lower() == "warning"]
    )
    return "\n".join(values)


def force_delete(cluster: Cluster, namespace: str, pod: str) -> Any:
    """Delete with grace period 0 and confirm that pod is gone (its controller may already
    have made a new one of the same name); returns the response headers."""
    uid = cluster.core.read_namespaced_pod(pod, namespace).metadata.uid
    _, _, headers = cluster.core.delete_namespaced_pod_with_http_info(
        pod, namespace, grace_period_seconds=0
    )

    def gone() -> bool:
        try:
            return bool(cluster.core.read_namespaced_pod(pod, namespace).metadata.uid != uid)
        except ApiException as exc:
            return exc.status == 404

    wait_for(gone, timeout=10, what=f"pod {namespace}/{pod} deleted")
    return headers


def test_only_workloads_that_mount_claims_are_sent_to_us(
    cluster: Cluster, namespaced: Install
) -> None:
    """The workloads webhook's matchCondition: the API server does not call us for a
    Deployment whose pods mount no claim (shared-volume has nothing to say of it)."""
    ns = cluster.namespace(mode="enforce")

    def calls() -> float:
        answer = cluster.api.call_api("GET", f"{cluster.api.configuration.host}/metrics")
        answer.read()
        total = 0.0
        for line in answer.data.decode().splitlines():
            if line.startswith(
                "apiserver_admission_webhook_admission_duration_seconds_count{"
            ) and ('name="workloads.stateful-guard.io"' in line and 'operation="CREATE"' in line):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def deployment(name: str, claim: str | None) -> dict[str, Any]:
        volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}] if claim else []
        return {
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [{"name": "app", "image": "busybox:1.37"}],
                        "volumes": volumes,
                    },
                },
            },
        }

    before = calls()
    cluster.apps.create_namespaced_deployment(ns, deployment("plain", None), dry_run="All")
    assert calls() == before, "not sent"
    cluster.apps.create_namespaced_deployment(ns, deployment("claims", "shared"), dry_run="All")
    assert calls() == before + 1, "sent"
