"""Every policy through the real API server (namespace opt-in install, labelled enforce)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client import ApiException

from tests.e2e.cluster import (
    SERVICE_ACCOUNT,
    Cluster,
    Install,
    headless_service,
    message,
    statefulset,
    wait_for,
)
from tests.e2e.test_namespaced import refusal, warnings


def _service(cluster: Cluster, ns: str, name: str) -> Any:
    try:
        return cluster.core.read_namespaced_service(name, ns)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _claims(cluster: Cluster, ns: str) -> list[str]:
    return sorted(
        c.metadata.name for c in cluster.core.list_namespaced_persistent_volume_claim(ns).items
    )


def test_missing_headless_service_made_by_the_leader_owned_by_the_set(
    cluster: Cluster, namespaced: Install
) -> None:
    """Admission only marks the set; the leader makes the Service from the stored set, owned
    by it from the start."""
    ns = cluster.namespace(mode="enforce")
    body = statefulset("mysql")
    body["spec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"name": "mysql", "containerPort": 3306}
    ]
    created = cluster.apps.create_namespaced_stateful_set(ns, body)
    assert created.metadata.annotations["stateful-guard.io/managed-service"] == "true"
    service = wait_for(lambda: _service(cluster, ns, "mysql"), what="the managed Service")
    assert service.spec.cluster_ip == "None"
    assert service.spec.selector == {"app": "mysql"}
    assert service.spec.publish_not_ready_addresses is True
    assert [(p.name, p.port) for p in service.spec.ports] == [("mysql", 3306)]
    assert service.metadata.labels == {"app.kubernetes.io/managed-by": "stateful-guard"}
    assert [(o.kind, o.name, o.uid) for o in service.metadata.owner_references] == [
        ("StatefulSet", "mysql", created.metadata.uid)
    ]


def test_dry_run_leaves_no_service_behind(cluster: Cluster, namespaced: Install) -> None:
    ns = cluster.namespace(mode="enforce")
    answer = cluster.apps.create_namespaced_stateful_set(ns, statefulset("zk"), dry_run="All")
    assert answer.spec.service_name == "zk"
    with pytest.raises(TimeoutError):
        wait_for(lambda: _service(cluster, ns, "zk"), timeout=3)


def test_existing_service_never_overwritten(cluster: Cluster, namespaced: Install) -> None:
    ns = cluster.namespace(mode="enforce")
    mine = headless_service("web", "web")
    mine["metadata"]["labels"] = {"owner": "me"}
    cluster.core.create_namespaced_service(ns, mine)
    cluster.apps.create_namespaced_stateful_set(ns, statefulset("web", service_name="web"))
    with pytest.raises(TimeoutError):
        wait_for(lambda: _service(cluster, ns, "web").metadata.labels != {"owner": "me"}, timeout=3)


def test_a_refused_set_never_gets_a_service(cluster: Cluster, namespaced: Install) -> None:
    """The mutation marked the set, then validation refused it: it was never stored, so the
    leader, which reads stored sets, makes nothing (admission has no side effects)."""
    ns = cluster.namespace(mode="enforce")
    ghost = statefulset("ghost")
    ghost["metadata"]["annotations"] = {"stateful-guard.io/server-id": "no-such-preset"}
    with pytest.raises(ApiException) as refused:
        cluster.apps.create_namespaced_stateful_set(ns, ghost)
    assert "[server-id]" in message(refused.value)
    with pytest.raises(TimeoutError):
        wait_for(lambda: _service(cluster, ns, "ghost"), timeout=5)


def test_our_identity_writes_only_our_services(cluster: Cluster, namespaced: Install) -> None:
    """The ValidatingAdmissionPolicy in deploy/: as the webhook's ServiceAccount, a Service not
    labelled ours (kube-dns's selector, in any namespace) is refused by the API server."""
    ns = cluster.namespace(mode="enforce")
    impostor = headless_service("dns", "dns")
    impostor["spec"]["selector"] = {"k8s-app": "kube-dns"}
    with pytest.raises(ApiException) as refused:
        as_webhook = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
        as_webhook.set_default_header("Impersonate-User", SERVICE_ACCOUNT)
        k8s.CoreV1Api(as_webhook).create_namespaced_service(ns, impostor)
    assert refused.value.status == 403
    assert "stateful-guard writes only the Services labelled" in message(refused.value)


def test_our_identity_writes_only_our_disruption_budgets(
    cluster: Cluster, namespaced: Install
) -> None:
    """The same for PodDisruptionBudgets: as the webhook's ServiceAccount, a budget not
    labelled ours, or ours with an empty selector (every pod of the namespace), is refused;
    ours with a selector is made."""
    ns = cluster.namespace(mode="enforce")
    as_webhook = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    as_webhook.set_default_header("Impersonate-User", SERVICE_ACCOUNT)
    budgets = k8s.PolicyV1Api(as_webhook)

    def budget(name: str, labels: dict[str, str], selector: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "labels": labels},
            "spec": {"selector": selector, "maxUnavailable": 1},
        }

    ours = {"app.kubernetes.io/managed-by": "stateful-guard"}
    with pytest.raises(ApiException) as refused:
        budgets.create_namespaced_pod_disruption_budget(
            ns, budget("theirs", {}, {"matchLabels": {"app": "db"}})
        )
    assert refused.value.status == 403
    assert "stateful-guard writes only the PodDisruptionBudgets labelled" in message(refused.value)
    with pytest.raises(ApiException) as refused:
        budgets.create_namespaced_pod_disruption_budget(ns, budget("all", ours, {}))
    assert "with a non-empty selector" in message(refused.value)
    made = budgets.create_namespaced_pod_disruption_budget(
        ns, budget("db-quorum", ours, {"matchLabels": {"app": "db"}})
    )
    assert made.metadata.labels == ours


def test_server_id_init_container_runs_restricted(cluster: Cluster, namespaced: Install) -> None:
    """Pod Security admission (built into the API server) at `restricted` admits the pods the
    controller makes from an annotated set: the init container passes it."""
    ns = cluster.namespace(
        mode="enforce", labels={"pod-security.kubernetes.io/enforce": "restricted"}
    )
    body = statefulset("mysql", service_name="mysql")
    body["metadata"]["annotations"] = {"stateful-guard.io/server-id": "mysql"}
    body["spec"]["template"]["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 999,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    body["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    cluster.apps.create_namespaced_stateful_set(ns, body)
    made = wait_for(lambda: cluster.core.read_namespaced_pod("mysql-0", ns), what="mysql-0")
    assert made.spec.init_containers[0].security_context.run_as_non_root is True


def test_server_id_init_container(cluster: Cluster, namespaced: Install) -> None:
    ns = cluster.namespace(mode="enforce")
    body = statefulset("mysql", service_name="mysql", replicas=3)
    body["metadata"]["annotations"] = {"stateful-guard.io/server-id": "mysql"}
    cluster.apps.create_namespaced_stateful_set(ns, body)
    pod = cluster.apps.read_namespaced_stateful_set("mysql", ns).spec.template.spec
    init = pod.init_containers[0]
    assert init.name == "stateful-guard-server-id"
    assert {e.name: e.value for e in init.env if e.value}["SERVER_ID_OFFSET"] == "100"
    mounts = {m.mount_path for m in pod.containers[0].volume_mounts}
    assert "/etc/mysql/conf.d/stateful-guard-server-id.cnf" in mounts
    # The pods the controller makes carry the label the init container reads.
    made = wait_for(lambda: cluster.core.read_namespaced_pod("mysql-2", ns), what="mysql-2")
    assert made.metadata.labels["apps.kubernetes.io/pod-index"] == "2"


def test_claims_of_a_running_set_protected(cluster: Cluster, namespaced: Install) -> None:
    ns = cluster.namespace(mode="enforce")
    cluster.apps.create_namespaced_stateful_set(
        ns, statefulset("kafka-broker", service_name="kafka-broker", replicas=2)
    )
    wait_for(
        lambda: _claims(cluster, ns) == ["data-kafka-broker-0", "data-kafka-broker-1"],
        what="the set's claims",
    )
    refused = refusal(
        lambda: cluster.core.delete_namespaced_persistent_volume_claim(
            "data-kafka-broker-1", ns, dry_run="All"
        )
    )
    assert refused.status == 403
    assert (
        f"[pvc-protection] PVC {ns}/data-kafka-broker-1 is claim template data of "
        "StatefulSet kafka-broker, ordinal 1"
    ) in message(refused)
    # kubectl scale: the scale subresource; retained claims, so allowed.
    cluster.apps.patch_namespaced_stateful_set_scale("kafka-broker", ns, {"spec": {"replicas": 1}})
    wait_for(
        lambda: cluster.apps.read_namespaced_stateful_set("kafka-broker", ns).spec.replicas == 1
    )

    def deleted() -> str:
        _, _, headers = cluster.core.delete_namespaced_persistent_volume_claim_with_http_info(
            "data-kafka-broker-1", ns
        )
        return warnings(headers)

    assert "data of scaled-down kafka-broker-1 is deleted for good" in wait_for(
        deleted, timeout=15, what="the view to see the scale-down"
    )


def test_retention_delete_is_the_owners_intent(cluster: Cluster, namespaced: Install) -> None:
    """A declared retention policy of Delete: scaling down and deleting are allowed, each
    with a warning saying what it deletes (dry runs: nothing changes)."""
    ns = cluster.namespace(mode="enforce")
    body = statefulset("etcd", service_name="etcd", replicas=3)
    body["spec"]["persistentVolumeClaimRetentionPolicy"] = {
        "whenDeleted": "Delete",
        "whenScaled": "Delete",
    }
    cluster.apps.create_namespaced_stateful_set(ns, body)

    def scaled() -> str:
        _, _, headers = cluster.apps.patch_namespaced_stateful_set_scale_with_http_info(
            "etcd", ns, {"spec": {"replicas": 1}}, dry_run="All"
        )
        return str(headers.get("Warning", ""))

    assert "removes 2 members' claims (whenScaled: Delete)" in wait_for(
        lambda: "whenScaled" in scaled() and scaled(), timeout=15, what="the warning"
    )
    _, _, headers = cluster.apps.delete_namespaced_stateful_set_with_http_info(
        "etcd", ns, dry_run="All"
    )
    assert "whenDeleted: Delete" in str(headers.get("Warning", ""))
    assert cluster.apps.read_namespaced_stateful_set("etcd", ns).spec.replicas == 3


def test_quorum_through_the_scale_subresource(cluster: Cluster, namespaced: Install) -> None:
    ns = cluster.namespace(mode="enforce")
    body = statefulset("zk", service_name="zk", replicas=5)
    body["metadata"]["annotations"] = {
        "stateful-guard.io/min-replicas": "3",
        "stateful-guard.io/max-scale-down": "1",
    }
    cluster.apps.create_namespaced_stateful_set(ns, body)
    refused = refusal(
        lambda: cluster.apps.patch_namespaced_stateful_set_scale(
            "zk", ns, {"spec": {"replicas": 2}}, dry_run="All"
        )
    )
    assert refused.status == 403
    assert (
        f"[quorum] StatefulSet {ns}/zk: scaling from 5 to 2 goes below its quorum: "
        "annotation stateful-guard.io/min-replicas asks for 3"
    ) in message(refused)
    with pytest.raises(ApiException) as too_fast:
        cluster.apps.patch_namespaced_stateful_set_scale("zk", ns, {"spec": {"replicas": 3}})
    assert "removes 2 members at once" in message(too_fast.value)
    cluster.apps.patch_namespaced_stateful_set_scale("zk", ns, {"spec": {"replicas": 4}})
    assert cluster.apps.read_namespaced_stateful_set("zk", ns).spec.replicas == 4


def test_shared_rwo_claim_refused(cluster: Cluster, namespaced: Install) -> None:
    ns = cluster.namespace(mode="enforce")
    cluster.core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": "rg-logs"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    deployment = {
        "metadata": {"name": "rg-shared"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "rg"}},
            "template": {
                "metadata": {"labels": {"app": "rg"}},
                "spec": {
                    "containers": [{"name": "rg", "image": "k8spatterns/random-generator:1.0"}],
                    "volumes": [
                        {"name": "logs", "persistentVolumeClaim": {"claimName": "rg-logs"}}
                    ],
                },
            },
        },
    }
    refused = refusal(
        lambda: cluster.apps.create_namespaced_deployment(ns, deployment, dry_run="All")
    )
    assert (
        f"[shared-volume] Deployment {ns}/rg-shared: 3 replicas mount the ReadWriteOnce "
        "claim rg-logs"
    ) in message(refused)
    deployment["spec"]["replicas"] = 1
    cluster.apps.create_namespaced_deployment(ns, deployment)


def test_practices_warn_by_default(cluster: Cluster, namespaced: Install) -> None:
    ns = cluster.namespace(mode="enforce")
    body = statefulset("redis", service_name="redis")
    body["spec"]["podManagementPolicy"] = "OrderedReady"
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "REDIS_PASSWORD", "value": "hunter2"}
    ]
    _, _, headers = cluster.apps.create_namespaced_stateful_set_with_http_info(ns, body)
    text = warnings(headers)
    assert (
        f"[stateful-practices] would deny: StatefulSet {ns}/redis: add a readinessProbe "
        "(OrderedReady waits on it)" in text
    )
    assert "env REDIS_PASSWORD: literal secret, use secretKeyRef" in text
    assert text.isascii()


def test_newcomer_scenario_with_the_docs_mysql_example(
    cluster: Cluster, namespaced: Install, default_class: str
) -> None:
    """Issue 4's check, in one go: a namespace opted in; the Kubernetes docs' MySQL set applied
    without its Service; scaled through the scale subresource; a claim deleted; a pod
    force-deleted; a Deployment sharing one RWO claim."""
    from tests.e2e.test_namespaced import bind
    from tests.support import example

    ns = cluster.namespace(mode="enforce")
    mysql = example("mysql-replicated.yaml", "StatefulSet")
    _, _, headers = cluster.apps.create_namespaced_stateful_set_with_http_info(ns, mysql)
    assert "[stateful-practices] would deny" in warnings(headers)
    stored = cluster.apps.read_namespaced_stateful_set("mysql", ns)
    assert stored.spec.volume_claim_templates[0].spec.storage_class_name is None
    service = wait_for(lambda: _service(cluster, ns, "mysql"), what="the headless Service")
    assert service.spec.cluster_ip == "None"

    cluster.apps.patch_namespaced_stateful_set_scale("mysql", ns, {"spec": {"replicas": 2}})
    assert cluster.apps.read_namespaced_stateful_set_scale("mysql", ns).spec.replicas == 2

    wait_for(lambda: "data-mysql-0" in _claims(cluster, ns), what="data-mysql-0")
    refused = refusal(
        lambda: cluster.core.delete_namespaced_persistent_volume_claim("data-mysql-0", ns)
    )
    assert "Scale mysql to 0 replicas first" in message(refused)

    wait_for(lambda: cluster.core.read_namespaced_pod("mysql-0", ns), what="mysql-0")
    bind(cluster, ns, "mysql-0")
    with pytest.raises(ApiException) as forced:
        cluster.core.delete_namespaced_pod("mysql-0", ns, grace_period_seconds=0)
    assert (
        f"[force-delete] pod {ns}/mysql-0 belongs to StatefulSet mysql; force deletion "
        "(grace period 0) can start a second mysql-0 while the first still writes to "
        "data-mysql-0."
    ) in message(forced.value)

    cluster.core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": "rg-logs"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    shared = example("random-generator.yaml", "ReplicaSet")
    refused = refusal(lambda: cluster.apps.create_namespaced_replica_set(ns, shared, dry_run="All"))
    assert f"[shared-volume] ReplicaSet {ns}/rg-shared: 3 replicas mount the ReadWriteOnce" in (
        message(refused)
    )
