"""The cluster-wide install: every namespace but kube-system, ours, and those labelled off."""

from __future__ import annotations

import pytest
from kubernetes.client import ApiException

from tests.e2e.cluster import NAMESPACE, Cluster, Install, message, statefulset, wait_for
from tests.e2e.test_namespaced import bind, force_delete


def test_unlabelled_namespace_is_enforced(
    cluster: Cluster, cluster_wide: Install, default_class: str
) -> None:
    ns = cluster.namespace(mode=None)
    cluster.apps.create_namespaced_stateful_set(ns, statefulset("kafka"))
    stored = cluster.apps.read_namespaced_stateful_set("kafka", ns)
    assert stored.spec.service_name == "kafka"
    # the class is left to the cluster (its claims get the default): the template stays as sent
    assert stored.spec.volume_claim_templates[0].spec.storage_class_name is None


@pytest.mark.parametrize("namespace", ["kube-system", NAMESPACE, "off"])
def test_excluded_namespaces_untouched(
    cluster: Cluster, cluster_wide: Install, namespace: str
) -> None:
    ns = cluster.namespace(mode="off") if namespace == "off" else namespace
    name = f"sg-e2e-{namespace.replace('-', '')[:6]}"
    cluster.apps.create_namespaced_stateful_set(
        ns, statefulset(name, service_name=name, storage_class="my-storage-class")
    )
    try:
        stored = cluster.apps.read_namespaced_stateful_set(name, ns)
        assert stored.spec.volume_claim_templates[0].spec.storage_class_name == (
            "my-storage-class"
        ), "not refused, not mutated"
        pod = f"{name}-0"
        wait_for(lambda: cluster.core.read_namespaced_pod(pod, ns), what=pod)
        bind(cluster, ns, pod)
        force_delete(cluster, ns, pod)  # not refused
    finally:
        cluster.apps.delete_namespaced_stateful_set(name, ns)


def test_force_delete_refused_cluster_wide(cluster: Cluster, cluster_wide: Install) -> None:
    ns = cluster.namespace(mode=None)
    cluster.apps.create_namespaced_stateful_set(ns, statefulset("db", service_name="db"))
    wait_for(lambda: cluster.core.read_namespaced_pod("db-0", ns), what="db-0")
    bind(cluster, ns, "db-0")
    with pytest.raises(ApiException) as refused:
        cluster.core.delete_namespaced_pod("db-0", ns, grace_period_seconds=0)
    assert f"[force-delete] pod {ns}/db-0 belongs to StatefulSet db" in message(refused.value)
