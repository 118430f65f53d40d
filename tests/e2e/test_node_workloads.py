"""The seed systems and the split-brain scenario on the real node, through stateful-guard
installed cluster-wide as shipped (`deploy/install.sh`): pods run, claims bind, and the
kubelet is stopped for real."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.e2e.cluster import NAMESPACE, SERVICE_ACCOUNT, Cluster, wait_for
from tests.e2e.controlplane import free_port
from tests.e2e.images import WEBHOOK
from tests.e2e.node import NAME, STORAGE_CLASS, NodeCluster, node_ready
from tests.e2e.workloads import (
    mysql_with_preset,
    random_generator,
    stand_in_set,
    zookeeper_with_preset,
)
from tests.support import ROOT

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


@pytest.fixture(scope="module")
def api(node_cluster: NodeCluster) -> Cluster:
    return node_cluster.api


@pytest.fixture(scope="module")
def certs(
    node_cluster: NodeCluster, api: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Installed cluster-wide as the README says; the certificates' directory."""
    directory = tmp_path_factory.mktemp("install") / "certs"
    node_cluster.run(
        "deploy/install.sh", "--image", WEBHOOK, "--certs", str(directory), "cluster-wide"
    )
    yield directory
    node_cluster.kubectl("delete", "-k", "deploy/overlays/cluster-wide", "--wait=false")
    api.wait_namespace_gone(NAMESPACE)


def ready(api: Cluster, namespace: str, name: str, replicas: int, timeout: float = 180) -> None:
    def done() -> bool:
        status = api.apps.read_namespaced_stateful_set(name, namespace).status
        return bool(status.ready_replicas == replicas and status.current_replicas == replicas)

    wait_for(
        done, timeout=timeout, what=f"StatefulSet {namespace}/{name} {replicas}/{replicas} ready"
    )


def applied(node_cluster: NodeCluster, api: Cluster, members: dict[str, Any], replicas: int) -> str:
    """`kubectl apply` of a set into a new namespace, once its members are ready."""
    namespace = api.namespace(mode=None)
    node_cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=_yaml(members))
    ready(api, namespace, members["metadata"]["name"], replicas)
    return namespace


def exec_in(
    node_cluster: NodeCluster, namespace: str, pod: str, container: str, *command: str
) -> str:
    return node_cluster.kubectl(
        "-n", namespace, "exec", pod, "-c", container, "--", *command
    ).stdout


def claims_bound(api: Cluster, namespace: str, names: list[str]) -> None:
    for name in names:
        claim = api.core.read_namespaced_persistent_volume_claim(name, namespace)
        assert claim.status.phase == "Bound", name
        assert claim.spec.storage_class_name == STORAGE_CLASS


def test_mysql_members_read_the_server_id_their_ordinal_implies(
    node_cluster: NodeCluster, api: Cluster, certs: Path
) -> None:
    namespace = applied(node_cluster, api, mysql_with_preset(), 3)
    for ordinal in range(3):
        pod = f"mysql-{ordinal}"
        written = exec_in(
            node_cluster,
            namespace,
            pod,
            "mysql",
            "cat",
            "/etc/mysql/conf.d/stateful-guard-server-id.cnf",
        )
        assert written == f"[mysqld]\nserver-id={100 + ordinal}\n"
        init = node_cluster.kubectl(
            "-n", namespace, "logs", pod, "-c", "stateful-guard-server-id"
        ).stdout
        assert f"ordinal {ordinal}, id {100 + ordinal} -> server-id.cnf" in init
    claims_bound(api, namespace, [f"data-mysql-{i}" for i in range(3)])
    api.core.delete_namespace(namespace)


def test_zookeeper_members_read_their_myid(
    node_cluster: NodeCluster, api: Cluster, certs: Path
) -> None:
    namespace = applied(node_cluster, api, zookeeper_with_preset(), 3)
    for ordinal in range(3):
        myid = exec_in(
            node_cluster, namespace, f"zk-{ordinal}", "app", "cat", "/var/run/stateful-guard/myid"
        )
        assert myid == f"{ordinal + 1}\n"
        assert (
            exec_in(
                node_cluster, namespace, f"zk-{ordinal}", "app", "sh", "-c", "echo $POD_ORDINAL"
            )
            == f"{ordinal}\n"
        )
    api.core.delete_namespace(namespace)


def test_random_generator_gets_its_service_and_starts_in_order(
    node_cluster: NodeCluster, api: Cluster, certs: Path
) -> None:
    namespace = applied(node_cluster, api, random_generator(), 2)
    service = wait_for(
        lambda: api.core.read_namespaced_service("random-generator", namespace),
        timeout=60,
        what="the headless Service from the leader",
    )
    assert service.spec.cluster_ip == "None"
    assert service.spec.selector == {"app": "random-generator"}
    assert [o.name for o in service.metadata.owner_references] == ["rg"]
    # OrderedReady: rg-1 was made only once rg-0 was Ready.
    first, second = (api.core.read_namespaced_pod(f"rg-{i}", namespace) for i in range(2))
    became_ready = next(
        c.last_transition_time for c in first.status.conditions if c.type == "Ready"
    )
    assert second.metadata.creation_timestamp >= became_ready
    # The Service publishes both members, each serving its own claim's content.
    slices = k8s.DiscoveryV1Api(api.api).list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=random-generator"
    )
    addresses = {
        a
        for s in slices.items
        for e in s.endpoints or []
        if e.conditions.ready
        for a in e.addresses
    }
    assert addresses == {first.status.pod_ip, second.status.pod_ip}
    for pod in (first, second):
        assert _get(f"http://{pod.status.pod_ip}:8080/hello") == f"{pod.metadata.name}\n"
    claims_bound(api, namespace, ["logs-rg-0", "logs-rg-1"])
    api.core.delete_namespace(namespace)


class ReplicaElsewhere:
    """A webhook replica off the failing node. The one real node here also runs the shipped
    replicas, whose endpoints turn not-ready with it; in a cluster they spread across nodes
    (the Deployment's anti-affinity). This one runs on the host, as the ServiceAccount, with
    the install's certificate and configuration, and joins the installed Service through an
    EndpointSlice of its own: the API server reaches it as it would a replica on a healthy
    node."""

    SLICE = "stateful-guard-elsewhere"

    def __init__(self, node_cluster: NodeCluster, api: Cluster, certs: Path, work: Path) -> None:
        self.api = api
        self.port, self.ops = free_port(), free_port()
        config = work / "config.yaml"
        config.write_text(
            api.core.read_namespaced_config_map("stateful-guard-config", NAMESPACE).data[
                "config.yaml"
            ]
        )
        identity = node_cluster.plane.user(
            SERVICE_ACCOUNT,
            groups=("system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"),
        )
        self.log = work / "replica.log"
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "webhook.cli", "serve",
                "--listen", f"{node_cluster.plane.node_ip}:{self.port}",
                "--ops-listen", f"127.0.0.1:{self.ops}",
                "--cert-dir", str(certs), "--config", str(config), "--kubeconfig", str(identity),
                "--shutdown-delay=0",
            ],
            cwd=ROOT,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(
            lambda: _get(f"http://127.0.0.1:{self.ops}/readyz") is not None,
            timeout=60,
            what="the replica ready",
        )
        k8s.DiscoveryV1Api(api.api).create_namespaced_endpoint_slice(
            NAMESPACE,
            {
                "metadata": {
                    "name": self.SLICE,
                    "labels": {"kubernetes.io/service-name": "stateful-guard"},
                },
                "addressType": "IPv4",
                "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": [node_cluster.plane.node_ip], "conditions": {"ready": True}}
                ],
            },
        )

    def stop(self) -> None:
        k8s.DiscoveryV1Api(self.api.api).delete_namespaced_endpoint_slice(self.SLICE, NAMESPACE)
        self.process.terminate()
        self.process.wait(timeout=30)


def test_split_brain_force_delete_refused_while_the_old_container_serves(
    node_cluster: NodeCluster, api: Cluster, certs: Path, tmp_path: Path
) -> None:
    """Stop the kubelet: the node goes NotReady and the pods Terminating. A force delete of a
    set pod is refused with the safe procedure; where the webhook does not guard
    (mode=off), the force delete goes through, the StatefulSet controller makes a second
    web-0, and the first one's container is still serving on its IP. The kubelet returns and
    both sets recover."""
    assert node_cluster.node is not None
    guarded = api.namespace(mode=None)
    unguarded = api.namespace(mode="off")
    for namespace in (guarded, unguarded):
        api.apps.create_namespaced_stateful_set(namespace, stand_in_set("web", replicas=1))
    for namespace in (guarded, unguarded):
        ready(api, namespace, "web", 1)
    old = {ns: api.core.read_namespaced_pod("web-0", ns) for ns in (guarded, unguarded)}
    replica = ReplicaElsewhere(node_cluster, api, certs, tmp_path)
    node_cluster.node.pause_kubelet()
    try:
        started = time.monotonic()
        wait_for(lambda: not node_ready(api.core), timeout=90, what=f"node {NAME} NotReady")
        unready_after = time.monotonic() - started
        for namespace in (guarded, unguarded):
            wait_for(
                lambda ns=namespace: (
                    api.core.read_namespaced_pod("web-0", ns).metadata.deletion_timestamp
                ),
                timeout=60,
                what="web-0 Terminating (taint eviction)",
            )
        evicted_after = time.monotonic() - started

        refused = node_cluster.kubectl(
            "-n", guarded, "delete", "pod", "web-0", "--force", "--grace-period=0", check=False
        )  # fmt: skip
        assert refused.returncode != 0, refused.stdout
        assert (
            'admission webhook "pods.stateful-guard.io" denied the request: [force-delete]'
            in refused.stderr
        )
        assert (
            f"Node {NAME} is not Ready: if it is down, confirm it is powered off, then "
            f"`kubectl taint nodes {NAME} "
            "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute`"
        ) in refused.stderr
        assert (
            api.core.read_namespaced_pod("web-0", guarded).metadata.uid == old[guarded].metadata.uid
        )

        node_cluster.kubectl(
            "-n", unguarded, "delete", "pod", "web-0", "--force", "--grace-period=0"
        )
        second = wait_for(
            lambda: _other_pod(api, unguarded, old[unguarded].metadata.uid),
            timeout=30,
            what="the StatefulSet controller's second web-0",
        )
        # Two web-0 now: the new one admitted (Pending: the only real node is the one down),
        # the old container still running and serving on its IP.
        assert second.metadata.name == "web-0"
        for namespace in (guarded, unguarded):
            assert _get(f"http://{old[namespace].status.pod_ip}:8080/hello") == "web-0\n"

        # Fencing: the operator confirms the node is off and taints it out-of-service. The
        # same force delete is allowed now (or the pod garbage collector, which force-deletes
        # the pods of an out-of-service node, got there first).
        node_cluster.kubectl("taint", "nodes", NAME, f"{OUT_OF_SERVICE}=nodeshutdown:NoExecute")

        def fenced() -> bool:
            done = node_cluster.kubectl(
                "-n", guarded, "delete", "pod", "web-0", "--force", "--grace-period=0",
                check=False,
            )  # fmt: skip
            return done.returncode == 0 or "NotFound" in done.stderr

        wait_for(fenced, timeout=30, what="the force delete allowed on a fenced node")
        wait_for(
            lambda: _other_pod(api, guarded, old[guarded].metadata.uid),
            timeout=30,
            what="the replacement web-0 of the fenced node's",
        )
    finally:
        node_cluster.kubectl("taint", "nodes", NAME, f"{OUT_OF_SERVICE}-", check=False)
        node_cluster.node.resume_kubelet()
        replica.stop()
    print(f"node NotReady after {unready_after:.0f}s, pods Terminating after {evicted_after:.0f}s")
    wait_for(lambda: node_ready(api.core), timeout=90, what=f"node {NAME} Ready again")
    for namespace in (guarded, unguarded):
        ready(api, namespace, "web", 1)
        assert (
            api.core.read_namespaced_pod("web-0", namespace).metadata.uid
            != old[namespace].metadata.uid
        )
        api.core.delete_namespace(namespace)


def quorum_set(name: str) -> dict[str, Any]:
    """Three members of an annotated majority quorum, each Ready while /tmp/ready exists
    (so a test can take a member down and bring it back without restarting it)."""
    members = stand_in_set(name, replicas=3)
    members["metadata"]["annotations"] = {"stateful-guard.io/quorum": "majority"}
    (container,) = members["spec"]["template"]["spec"]["containers"]
    container["command"] = ["sh", "-c", "touch /tmp/ready; " + container["command"][2]]
    container["readinessProbe"] = {
        "exec": {"command": ["test", "-f", "/tmp/ready"]},
        "initialDelaySeconds": 2,
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    return members


def pod_ready(api: Cluster, namespace: str, name: str) -> bool:
    try:
        pod = api.core.read_namespaced_pod(name, namespace)
    except k8s.ApiException:
        return False
    conditions = pod.status.conditions or []
    return pod.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in conditions
    )


def test_a_second_member_deleted_while_the_first_is_down_is_refused(
    node_cluster: NodeCluster, api: Cluster, certs: Path
) -> None:
    """etcd-operator #1972: two of three members deleted in a row, each delete graceful.
    The first goes; the second is refused (429) while the first is not back, and passes once
    it is."""
    namespace = api.namespace(mode=None)
    api.apps.create_namespaced_stateful_set(namespace, quorum_set("zk"))
    ready(api, namespace, "zk", 3)
    node_cluster.kubectl("-n", namespace, "delete", "pod", "zk-0", "--wait=false")
    time.sleep(0.5)  # the webhook's view sees zk-0 terminating; it is back no sooner than 2 s
    second = node_cluster.kubectl("-n", namespace, "delete", "pod", "zk-1", check=False)
    assert second.returncode != 0, second.stdout
    assert (
        'admission webhook "pods.stateful-guard.io" denied the request: [quorum]' in second.stderr
    )
    assert "2 of 3 members are ready (down: zk-0)" in second.stderr
    assert pod_ready(api, namespace, "zk-1")
    wait_for(lambda: pod_ready(api, namespace, "zk-0"), timeout=60, what="zk-0 back")
    node_cluster.kubectl("-n", namespace, "delete", "pod", "zk-1", "--wait=false")
    ready(api, namespace, "zk", 3)
    api.core.delete_namespace(namespace)


def test_a_drain_waits_for_a_degraded_quorum_set(
    node_cluster: NodeCluster, api: Cluster, certs: Path
) -> None:
    """`kubectl drain` of the node with zk-2 down: our 429 makes it wait and retry, as for a
    PDB, instead of taking the quorum; once zk-2 is ready again one member is evicted, and
    the drain finishes when that member is back (uncordoned here: the only node is the one
    drained; in a cluster it starts on another)."""
    namespace = api.namespace(mode=None)
    api.apps.create_namespaced_stateful_set(namespace, quorum_set("zk"))
    ready(api, namespace, "zk", 3)
    before = {p: api.core.read_namespaced_pod(p, namespace).metadata.uid for p in ("zk-0", "zk-1")}
    exec_in(node_cluster, namespace, "zk-2", "app", "rm", "/tmp/ready")
    wait_for(lambda: not pod_ready(api, namespace, "zk-2"), timeout=30, what="zk-2 not ready")
    drain = subprocess.Popen(
        [
            "kubectl", "drain", NAME, "--timeout=180s", "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--pod-selector=app=zk,statefulset.kubernetes.io/pod-name!=zk-2",
        ],
        env=node_cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        time.sleep(12)  # two of the drain's 5-second retries
        assert drain.poll() is None, "the drain waits"
        now = {p: api.core.read_namespaced_pod(p, namespace).metadata.uid for p in before}
        assert now == before, "no member was evicted while zk-2 was down"
        exec_in(node_cluster, namespace, "zk-2", "app", "touch", "/tmp/ready")
        wait_for(
            lambda: any(not pod_ready(api, namespace, p) for p in before),
            timeout=30,
            what="one member evicted once zk-2 is ready",
        )
        node_cluster.kubectl("uncordon", NAME)
        output, _ = drain.communicate(timeout=180)
    finally:
        if drain.poll() is None:
            drain.kill()
        node_cluster.kubectl("uncordon", NAME, check=False)
    assert drain.returncode == 0, output
    assert "[quorum] pod" in output and "will retry after 5s" in output, output
    ready(api, namespace, "zk", 3)
    api.core.delete_namespace(namespace)


def _other_pod(api: Cluster, namespace: str, uid: str) -> Any:
    try:
        pod = api.core.read_namespaced_pod("web-0", namespace)
    except k8s.ApiException:
        return None
    return pod if pod.metadata.uid != uid else None


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return str(response.read().decode())
    except OSError:
        return None


def _yaml(obj: dict[str, Any]) -> str:
    return str(yaml.safe_dump(obj))
