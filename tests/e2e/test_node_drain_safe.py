"""The drain-safe profile on the real node, installed as the README says (`deploy/install.sh`
of a kustomization composing the cluster-wide overlay with `components/drain-safe`): quorum
sets get a PodDisruptionBudget of what their quorum can spare, never over a user's; every
refused (or, in warn mode, would-be-refused) delete, eviction and scale is an Event on its
object and a result in the namespace's PolicyReport; dry runs leave nothing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.e2e.cluster import NAMESPACE, Cluster, wait_for
from tests.e2e.images import WEBHOOK
from tests.e2e.node import NodeCluster
from tests.e2e.test_node_workloads import exec_in, pod_ready, quorum_set, ready
from tests.support import ROOT

REPORT = ("wgpolicyk8s.io", "v1alpha2", "policyreports")


@pytest.fixture(scope="module")
def api(node_cluster: NodeCluster) -> Cluster:
    return node_cluster.api


@pytest.fixture(scope="module")
def installed(
    node_cluster: NodeCluster, api: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The user's own kustomization: the overlay, the profile, and their own patch that
    makes the leader's passes quick for a test (every 2 s, reports every 5 s)."""
    work = tmp_path_factory.mktemp("drain-safe")
    top = work / "install"
    top.mkdir()
    deploy = ROOT / "deploy"
    fast = [
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": arg}
        for arg in ("--reconcile-interval=2", "--managed-service-delay=2", "--audit-interval=5")
    ]
    (top / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(deploy / "overlays" / "cluster-wide", top)],
                "components": [os.path.relpath(deploy / "components" / "drain-safe", top)],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "stateful-guard"},
                        "patch": json.dumps(fast),
                    }
                ],
            }
        )
    )
    node_cluster.kubectl("apply", "-f", "deploy/crds/policyreports.yaml")
    node_cluster.kubectl("wait", "--for=condition=Established", "crd/policyreports.wgpolicyk8s.io")
    node_cluster.run(
        "deploy/install.sh", "--image", WEBHOOK, "--certs", str(work / "certs"), str(top)
    )
    yield top
    node_cluster.kubectl("delete", "-k", str(top), "--wait=false")
    api.wait_namespace_gone(NAMESPACE)
    node_cluster.kubectl("delete", "-f", "deploy/crds/policyreports.yaml", "--wait=false")


def budget(api: Cluster, namespace: str, name: str) -> Any:
    try:
        return k8s.PolicyV1Api(api.api).read_namespaced_pod_disruption_budget(name, namespace)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_a_quorum_set_gets_a_budget_that_follows_it_and_yields_to_the_users(
    node_cluster: NodeCluster, api: Cluster, installed: Path
) -> None:
    namespace = api.namespace(mode=None)
    created = api.apps.create_namespaced_stateful_set(namespace, quorum_set("zk"))
    ours = wait_for(lambda: budget(api, namespace, "zk-quorum"), timeout=60, what="our budget")
    assert ours.spec.max_unavailable == 1
    assert ours.spec.unhealthy_pod_eviction_policy == "AlwaysAllow"
    assert ours.spec.selector.match_labels == {"app": "zk"}
    assert [(o.kind, o.uid) for o in ours.metadata.owner_references] == [
        ("StatefulSet", created.metadata.uid)
    ]
    ready(api, namespace, "zk", 3)
    wait_for(
        lambda: budget(api, namespace, "zk-quorum").status.disruptions_allowed == 1,
        timeout=60,
        what="the disruption controller to count the budget",
    )

    # Scaled to 5 (majority 3): two members to spare.
    api.apps.patch_namespaced_stateful_set_scale("zk", namespace, {"spec": {"replicas": 5}})
    wait_for(
        lambda: budget(api, namespace, "zk-quorum").spec.max_unavailable == 2,
        timeout=30,
        what="the budget to follow the set's replicas",
    )

    # The user's own budget: ours goes (two budgets make the eviction API refuse every
    # eviction of the pods), and no other is made while theirs is there.
    users = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "zk-pdb"},
        "spec": {"selector": {"matchLabels": {"app": "zk"}}, "minAvailable": 4},
    }
    node_cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=yaml.safe_dump(users))
    wait_for(lambda: budget(api, namespace, "zk-quorum") is None, timeout=30, what="ours gone")
    time.sleep(5)  # two more passes
    assert budget(api, namespace, "zk-quorum") is None, "never over the user's"
    assert budget(api, namespace, "zk-pdb").spec.min_available == 4, "theirs untouched"

    # Without theirs ours is back; deleting the set takes it along (it owns it).
    node_cluster.kubectl("-n", namespace, "delete", "pdb", "zk-pdb")
    wait_for(lambda: budget(api, namespace, "zk-quorum"), timeout=30, what="our budget back")
    node_cluster.kubectl("-n", namespace, "delete", "statefulset", "zk", "--cascade=foreground")
    wait_for(lambda: budget(api, namespace, "zk-quorum") is None, timeout=60, what="collected")
    api.core.delete_namespace(namespace)


def our_events(api: Cluster, namespace: str) -> list[Any]:
    return api.core.list_namespaced_event(namespace, field_selector="source=stateful-guard").items


def attempts(api: Cluster, namespace: str) -> list[dict[str, Any]]:
    try:
        report = k8s.CustomObjectsApi(api.api).get_namespaced_custom_object(
            *REPORT[:2], namespace, REPORT[2], "stateful-guard"
        )
    except k8s.ApiException as exc:
        if exc.status == 404:
            return []
        raise
    return [r for r in report.get("results") or [] if r.get("category") == "refused attempt"]


def test_refused_attempts_are_events_on_the_objects_and_results_in_the_report(
    node_cluster: NodeCluster, api: Cluster, installed: Path
) -> None:
    """Who tried to delete what, and what stopped it: a second member's delete (quorum),
    a force delete (force-delete), a scale below quorum (quorum) and an eviction while a
    member is down (quorum), each refused and each on record; a would-be refusal in a warn
    namespace on record as such; a refused dry run not on record."""
    me = node_cluster.kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"
    ).stdout.strip()
    namespace = api.namespace(mode=None)
    api.apps.create_namespaced_stateful_set(namespace, quorum_set("zk"))
    ready(api, namespace, "zk", 3)
    uids = {p: api.core.read_namespaced_pod(p, namespace).metadata.uid for p in ("zk-1", "zk-2")}

    dry = node_cluster.kubectl(
        "-n", namespace, "delete", "pod", "zk-2", "--force", "--grace-period=0",
        "--dry-run=server", check=False,
    )  # fmt: skip
    assert dry.returncode != 0 and "[force-delete]" in dry.stderr, dry.stderr
    forced = node_cluster.kubectl(
        "-n", namespace, "delete", "pod", "zk-2", "--force", "--grace-period=0", check=False
    )
    assert forced.returncode != 0 and "[force-delete]" in forced.stderr, forced.stderr
    scaled = node_cluster.kubectl(
        "-n", namespace, "scale", "statefulset", "zk", "--replicas=1", check=False
    )
    assert scaled.returncode != 0 and "[quorum]" in scaled.stderr, scaled.stderr
    exec_in(node_cluster, namespace, "zk-0", "app", "rm", "/tmp/ready")
    wait_for(lambda: not pod_ready(api, namespace, "zk-0"), timeout=30, what="zk-0 not ready")
    second = node_cluster.kubectl("-n", namespace, "delete", "pod", "zk-1", check=False)
    assert second.returncode != 0 and "[quorum]" in second.stderr, second.stderr
    for _ in range(3):  # as a drain retries: one Event, counted
        with pytest.raises(k8s.ApiException) as refused:
            api.core.create_namespaced_pod_eviction(
                "zk-2", namespace, {"metadata": {"name": "zk-2", "namespace": namespace}}
            )
        assert refused.value.status == 429
    exec_in(node_cluster, namespace, "zk-0", "app", "touch", "/tmp/ready")

    expected = {
        ("Delete", "Pod", "zk-2", "force-delete"),
        ("Scale", "StatefulSet", "zk", "quorum"),
        ("Delete", "Pod", "zk-1", "quorum"),
        ("Evict", "Pod", "zk-2", "quorum"),
    }

    def recorded() -> dict[tuple[str, str, str, str], Any]:
        found = {
            (
                e.action,
                e.involved_object.kind,
                e.involved_object.name,
                e.metadata.annotations["stateful-guard.io/policy"],
            ): e
            for e in our_events(api, namespace)
        }
        return (
            found
            if set(found) >= expected and found[("Evict", "Pod", "zk-2", "quorum")].count == 3
            else {}
        )

    events = wait_for(recorded, timeout=30, what="an Event for each refused attempt")
    assert set(events) == expected, "the dry run left none"
    for event in events.values():
        assert event.reason == "Refused" and event.type == "Warning"
        assert event.metadata.annotations["stateful-guard.io/user"] == me
        assert me in event.message
    assert events[("Delete", "Pod", "zk-1", "quorum")].involved_object.uid == uids["zk-1"]
    assert events[("Evict", "Pod", "zk-2", "quorum")].involved_object.uid == uids["zk-2"]
    assert "Refused" in node_cluster.kubectl("-n", namespace, "describe", "pod", "zk-1").stdout

    def reported() -> list[dict[str, Any]]:
        found = attempts(api, namespace)
        return found if len(found) >= len(expected) else []

    results = wait_for(reported, timeout=60, what="the PolicyReport to list the attempts")
    assert {
        (r["properties"]["attempt"], r["resources"][0]["name"], r["policy"], r["result"])
        for r in results
    } == {(action, name, policy, "fail") for action, _, name, policy in expected}
    assert all(r["properties"]["user"] == me for r in results)

    # In a warn namespace the force delete goes through: on record as what would be refused.
    warned = api.namespace(mode="warn")
    api.apps.create_namespaced_stateful_set(warned, quorum_set("web"))
    ready(api, warned, "web", 3)
    node_cluster.kubectl("-n", warned, "delete", "pod", "web-0", "--force", "--grace-period=0")
    [would] = wait_for(lambda: our_events(api, warned), timeout=30, what="the would-be refusal")
    assert (would.reason, would.action, would.involved_object.name) == (
        "WouldRefuse",
        "Delete",
        "web-0",
    )
    assert "would refuse (warn mode)" in would.message
    for name in (namespace, warned):
        api.core.delete_namespace(name)
