"""With the webhook stopped: no lock-out, and each webhook's documented failurePolicy holds.

deploy/base/webhooks.yaml: the mutating webhook and workloads.* are Ignore (objects are
created unmutated and unchecked), pods.*, data.* and evictions.* are Fail once the API
server has reached the webhook (StatefulSet pods cannot be force-deleted, nor claims deleted,
while we cannot judge), and Ignore until then (an install that never serves locks nothing).
kube-system and our own namespace are never sent to us; unlabelled namespaces are not, in
the opt-in install."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes.client import ApiException

from tests.e2e.cluster import NAMESPACE, Cluster, Install, message, statefulset, wait_for
from tests.e2e.test_namespaced import bind, force_delete


@pytest.fixture
def stopped(namespaced: Install) -> Iterator[Install]:
    namespaced.webhook.stop()
    yield namespaced
    namespaced.webhook.resume()


def _set_with_pod(cluster: Cluster, ns: str, name: str) -> str:
    cluster.apps.create_namespaced_stateful_set(ns, statefulset(name, service_name=name))
    pod = f"{name}-0"
    wait_for(lambda: cluster.core.read_namespaced_pod(pod, ns), what=pod)
    bind(cluster, ns, pod)
    return pod


@pytest.mark.parametrize("namespace", ["kube-system", NAMESPACE, "unlabelled"])
def test_namespaces_not_sent_to_us_keep_working(
    cluster: Cluster, stopped: Install, namespace: str
) -> None:
    ns = cluster.namespace(mode=None) if namespace == "unlabelled" else namespace
    name = f"lock-{namespace.replace('-', '')[:6]}"
    try:
        pod = _set_with_pod(cluster, ns, name)
        force_delete(cluster, ns, pod)
    finally:
        cluster.apps.delete_namespaced_stateful_set(name, ns)


def test_failure_policies_hold_in_guarded_namespaces(
    cluster: Cluster, stopped: Install, default_class: str
) -> None:
    ns = cluster.namespace(mode="enforce")
    # Ignore: created, neither mutated nor checked.
    pod = _set_with_pod(cluster, ns, "web")
    stored = cluster.apps.read_namespaced_stateful_set("web", ns)
    assert stored.spec.volume_claim_templates[0].spec.storage_class_name is None
    # Fail: a StatefulSet pod cannot be force-deleted while we cannot judge it...
    with pytest.raises(ApiException) as refused:
        cluster.core.delete_namespaced_pod(pod, ns, grace_period_seconds=0)
    assert refused.value.status == 500
    assert 'failed calling webhook "pods.stateful-guard.io"' in message(refused.value)
    # ...nor its claims deleted.
    claim = f"data-{pod}"
    wait_for(lambda: cluster.core.read_namespaced_persistent_volume_claim(claim, ns), what=claim)
    with pytest.raises(ApiException) as refused:
        cluster.core.delete_namespaced_persistent_volume_claim(claim, ns)
    assert 'failed calling webhook "data.stateful-guard.io"' in message(refused.value)
    # Of a claim's updates only the removal of its protection finalizer is sent to us: the
    # binder's and resizes' updates, a label here, do not wait while we are down.
    cluster.core.patch_namespaced_persistent_volume_claim(
        claim, ns, {"metadata": {"labels": {"tier": "db"}}}
    )
    with pytest.raises(ApiException) as refused:
        cluster.core.patch_namespaced_persistent_volume_claim(
            claim, ns, {"metadata": {"finalizers": None}}
        )
    assert 'failed calling webhook "data.stateful-guard.io"' in message(refused.value)
    # Other pods are not sent to us at all (objectSelector): deleting them works.
    cluster.core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "tools"},
            "spec": {
                "containers": [{"name": "sh", "image": "busybox:1.37"}],
                "nodeName": "e2e-node-1",
            },
        },
    )
    force_delete(cluster, ns, "tools")


def test_an_install_never_reached_locks_out_nothing(
    cluster: Cluster, stopped: Install, default_class: str
) -> None:
    """The webhook configurations applied as shipped while no replica serves (a missing
    image, a wrong caBundle): every stateful write proceeds. Once a replica is reached, the
    data webhooks fail closed again."""
    ns = cluster.namespace(mode="enforce")
    pod = _set_with_pod(cluster, ns, "early")
    for obj in stopped.webhook_configurations():
        cluster.apply(obj)  # a fresh install or a re-apply: `Ignore` as shipped
    assert stopped.failure_policies()["data.stateful-guard.io"] == "Ignore"
    cluster.core.delete_namespaced_persistent_volume_claim(f"data-{pod}", ns, dry_run="All")
    cluster.apps.patch_namespaced_stateful_set_scale("early", ns, {"spec": {"replicas": 0}})
    stopped.webhook.resume()
    stopped.wait_until_called()
    stopped.wait_fail_closed()
    stopped.webhook.stop()  # the fixture resumes it
