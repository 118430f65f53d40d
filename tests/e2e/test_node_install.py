"""stateful-guard installed on a real node exactly as the README says, each path from install
through upgrade to uninstall: `deploy/install.sh` (kustomize) with both overlays, and
`helm install` of the chart. The webhook runs as shipped: the image built from the
Dockerfile, two replicas, non-root with a read-only root filesystem, probes, the Lease
leader, in-cluster config; the API server reaches it through its Service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.e2e.cluster import NAMESPACE, Cluster, message, wait_for
from tests.e2e.images import WEBHOOK
from tests.e2e.node import NAME, NodeCluster
from tests.e2e.workloads import stand_in_set

REPOSITORY, _, TAG = WEBHOOK.rpartition(":")
UPGRADE_TAG = "upgrade"
DATA_WEBHOOKS = ("pods.stateful-guard.io", "data.stateful-guard.io", "evictions.stateful-guard.io")


@pytest.fixture(scope="module")
def api(node_cluster: NodeCluster) -> Cluster:
    return node_cluster.api


@pytest.fixture(scope="module")
def upgrade_image(node_cluster: NodeCluster) -> Iterator[str]:
    """The same image under a second tag: an upgrade is a new ReplicaSet rolling out."""
    assert node_cluster.node is not None
    image = f"{REPOSITORY}:{UPGRADE_TAG}"
    node_cluster.node.tag_image(WEBHOOK, image)
    yield image


def webhook_pods(api: Cluster) -> list[k8s.V1Pod]:
    return [
        pod
        for pod in api.core.list_namespaced_pod(
            NAMESPACE, label_selector="app.kubernetes.io/component=webhook"
        ).items
        if pod.metadata.deletion_timestamp is None
    ]


def assert_serving(node_cluster: NodeCluster, api: Cluster, image: str, guarded: str) -> None:
    """What a user sees once the install says it is done."""
    deployment = api.apps.read_namespaced_deployment("stateful-guard", NAMESPACE)
    assert deployment.status.available_replicas == 2
    pods = webhook_pods(api)
    assert len(pods) == 2 and all(p.spec.node_name == NAME for p in pods)
    assert {c.image for p in pods for c in p.spec.containers} == {image}
    # Non-root on a read-only root filesystem, as the Deployment says and the image allows.
    shell = node_cluster.kubectl(
        "-n", NAMESPACE, "exec", pods[0].metadata.name, "--",
        "sh", "-c", "id -u; touch /probe 2>&1 || true",
    ).stdout  # fmt: skip
    assert shell.splitlines()[0] == "65532"
    assert "Read-only file system" in shell
    # The API server calls it (it picks up webhook configurations within a second or so): a
    # dry-run set without a serviceName comes back with one.
    probe = stand_in_set("probe", replicas=1)
    probe["spec"]["serviceName"] = ""
    wait_for(
        lambda: (
            api.apps.create_namespaced_stateful_set(guarded, probe, dry_run="All").spec.service_name
            == "probe"
        ),
        timeout=30,
        what="the API server to call the webhook",
    )
    # And it guards: a running set pod's force delete is refused with our message.
    refused = node_cluster.kubectl(
        "-n", guarded, "delete", "pod", "app-0", "--force", "--grace-period=0", check=False
    )  # fmt: skip
    assert refused.returncode != 0
    assert 'admission webhook "pods.stateful-guard.io" denied the request' in refused.stderr
    assert "[force-delete] pod" in refused.stderr
    # One replica leads (the Lease); the API server has reached one (just now), so the data
    # webhooks, shipped Ignore, turn Fail.
    # After an upgrade the old leader releases the Lease as it stops, and a new pod takes it
    # at its next renewal (every 10 s).
    leases = k8s.CoordinationV1Api(api.api)
    wait_for(
        lambda: (
            leases.read_namespaced_lease("stateful-guard", NAMESPACE).spec.holder_identity
            in {p.metadata.name for p in pods}
        ),
        timeout=30,
        what="a current replica to lead",
    )

    def closed() -> bool:
        hooks = k8s.AdmissionregistrationV1Api(api.api).read_validating_webhook_configuration(
            "stateful-guard"
        )
        return all(h.failure_policy == "Fail" for h in hooks.webhooks if h.name in DATA_WEBHOOKS)

    wait_for(closed, timeout=60, what="the data webhooks to fail closed once reached")


def guarded_namespace(api: Cluster, labels: dict[str, str]) -> str:
    """A namespace with one running set pod, app-0, to force-delete."""
    namespace = api.namespace(mode=None, labels=labels)
    api.apps.create_namespaced_stateful_set(namespace, stand_in_set("app", replicas=1))
    wait_for(
        lambda: (
            (api.apps.read_namespaced_stateful_set("app", namespace).status.ready_replicas) == 1
        ),
        timeout=120,
        what=f"StatefulSet {namespace}/app ready",
    )
    return namespace


def assert_uninstalled(node_cluster: NodeCluster, api: Cluster, guarded: str) -> None:
    """Nothing of ours is left in the way: the namespace, the webhooks and the
    cluster-scoped objects are gone, and the same force delete now goes through."""
    api.wait_namespace_gone(NAMESPACE)
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        gone = node_cluster.kubectl("get", kind, "stateful-guard", check=False)
        assert "NotFound" in gone.stderr
    policies = node_cluster.kubectl("get", "validatingadmissionpolicy", "-o", "name").stdout
    assert "stateful-guard" not in policies
    node_cluster.kubectl("-n", guarded, "delete", "pod", "app-0", "--force", "--grace-period=0")
    api.core.delete_namespace(guarded)


def helm_install(node_cluster: NodeCluster, certs: Path, *values: str, wait: bool = False) -> None:
    """README: the certificates from `stateful-guard certs`, then `helm install` with them."""
    node_cluster.run(
        "stateful-guard", "certs", "--out", str(certs),
        "--service", "stateful-guard", "--namespace", NAMESPACE,
    )  # fmt: skip
    node_cluster.run(
        "helm", "install", "stateful-guard", "deploy/chart",
        "-n", NAMESPACE, "--create-namespace",
        *(arg for value in values for arg in ("--set", value)),
        "--set-file", f"tls.crt={certs / 'tls.crt'}",
        "--set-file", f"tls.key={certs / 'tls.key'}",
        "--set-file", f"tls.ca={certs / 'ca.crt'}",
        *(["--wait", "--timeout", "5m"] if wait else []),
    )  # fmt: skip


@pytest.mark.parametrize("overlay", ["namespaced", "cluster-wide"])
def test_kustomize_install_upgrade_uninstall(
    node_cluster: NodeCluster, api: Cluster, upgrade_image: str, tmp_path: Path, overlay: str
) -> None:
    """README: `deploy/install.sh --image IMAGE OVERLAY`, the same with the new image to
    upgrade, `kubectl delete -k deploy/overlays/OVERLAY` to uninstall."""
    labels = {"stateful-guard.io/mode": "enforce"} if overlay == "namespaced" else {}
    guarded = guarded_namespace(api, labels)
    certs = tmp_path / "certs"
    node_cluster.run("deploy/install.sh", "--image", WEBHOOK, "--certs", str(certs), overlay)
    assert_serving(node_cluster, api, WEBHOOK, guarded)
    if overlay == "namespaced":  # an unlabelled namespace is not ours to judge
        free = guarded_namespace(api, {})
        node_cluster.kubectl("-n", free, "delete", "pod", "app-0", "--force", "--grace-period=0")
        api.core.delete_namespace(free)

    ca = (certs / "ca.crt").read_bytes()
    node_cluster.run("deploy/install.sh", "--image", upgrade_image, "--certs", str(certs), overlay)
    assert (certs / "ca.crt").read_bytes() == ca, "an upgrade keeps the CA in every caBundle"
    wait_for(
        lambda: {c.image for p in webhook_pods(api) for c in p.spec.containers} == {upgrade_image},
        timeout=120,
        what="the old ReplicaSet's pods gone",
    )
    assert_serving(node_cluster, api, upgrade_image, guarded)

    node_cluster.kubectl("delete", "-k", f"deploy/overlays/{overlay}", "--wait=false")
    assert_uninstalled(node_cluster, api, guarded)


def test_helm_install_upgrade_uninstall(
    node_cluster: NodeCluster, api: Cluster, upgrade_image: str, tmp_path: Path
) -> None:
    """README: certificates with `stateful-guard certs`, `helm install ... --create-namespace
    --set-file tls.*`, `helm upgrade --reuse-values`, `helm uninstall` and the namespace."""
    guarded = guarded_namespace(api, {"stateful-guard.io/mode": "enforce"})
    helm_install(
        node_cluster,
        tmp_path / "certs",
        f"image.repository={REPOSITORY}",
        f"image.tag={TAG}",
        wait=True,
    )
    node_cluster.kubectl(
        "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted"
    )
    assert_serving(node_cluster, api, WEBHOOK, guarded)

    node_cluster.run(
        "helm", "upgrade", "stateful-guard", "deploy/chart", "-n", NAMESPACE,
        "--reuse-values", "--set", f"image.tag={UPGRADE_TAG}", "--wait", "--timeout", "5m",
    )  # fmt: skip
    wait_for(
        lambda: {c.image for p in webhook_pods(api) for c in p.spec.containers} == {upgrade_image},
        timeout=120,
        what="the old ReplicaSet's pods gone",
    )
    assert_serving(node_cluster, api, upgrade_image, guarded)

    node_cluster.run("helm", "uninstall", "stateful-guard", "-n", NAMESPACE, "--wait")
    node_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
    assert_uninstalled(node_cluster, api, guarded)


def test_a_missing_image_locks_out_nothing(
    node_cluster: NodeCluster, api: Cluster, tmp_path: Path
) -> None:
    """An image the nodes cannot pull: no replica ever serves, and every stateful write in a
    guarded namespace proceeds (the data webhooks stay `Ignore`), PVC updates included."""
    guarded = guarded_namespace(api, {"stateful-guard.io/mode": "enforce"})
    helm_install(
        node_cluster,
        tmp_path / "certs",
        "image.repository=registry.invalid/stateful-guard",
        "image.pullPolicy=Never",
    )
    wait_for(
        lambda: any(
            (s.state.waiting and s.state.waiting.reason == "ErrImageNeverPull")
            for p in api.core.list_namespaced_pod(NAMESPACE).items
            for s in p.status.container_statuses or []
        ),
        timeout=60,
        what="the webhook pods to fail on their image",
    )
    claim = "data-app-0"
    api.core.patch_namespaced_persistent_volume_claim(
        claim, guarded, {"metadata": {"labels": {"touched": "yes"}}}
    )
    node_cluster.kubectl("-n", guarded, "scale", "statefulset", "app", "--replicas=0")
    node_cluster.kubectl("-n", guarded, "delete", "pod", "app-0", "--force", "--grace-period=0")
    try:
        api.core.delete_namespaced_persistent_volume_claim(claim, guarded)
    except k8s.ApiException as exc:
        pytest.fail(f"deleting {claim} was refused with no webhook serving: {message(exc)}")
    node_cluster.run("helm", "uninstall", "stateful-guard", "-n", NAMESPACE, "--wait")
    node_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
    api.core.delete_namespace(guarded)
    api.wait_namespace_gone(NAMESPACE)
