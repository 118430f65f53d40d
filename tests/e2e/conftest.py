"""The end-to-end suite's fixtures: a real API server (ours, built from Go modules, or any
cluster named by STATEFUL_GUARD_E2E_KUBECONFIG), and our webhook registered in it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.e2e import node
from tests.e2e.cluster import (
    Cluster,
    InClusterWebhook,
    Install,
    LocalWebhook,
    Webhook,
    require,
)
from tests.e2e.controlplane import (
    BIN,
    BINARIES,
    TOOLS,
    TOOLS_BIN,
    ControlPlane,
    NoToolchain,
    build,
    tool,
)
from tests.e2e.node import NodeCluster

EXTERNAL = os.environ.get("STATEFUL_GUARD_E2E_KUBECONFIG")
FAKE_NODE = "e2e-node-1"
_ABOUT: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a Go toolchain (and nothing cached) the control plane cannot exist here: those
    tests skip, saying why. CI builds the control plane before the tests and fails without
    Go, so it never skips them."""
    if EXTERNAL or not any("tests/e2e/" in item.nodeid for item in items):
        return
    if not (
        all((BIN / b).exists() for b in BINARIES) and all((TOOLS_BIN / t).exists() for t in TOOLS)
    ):
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"e2e: building etcd, kube-apiserver, kube-controller-manager, kustomize and helm "
                f"from Go modules into {BIN.parent.parent.parent}; the first build takes several "
                "minutes"
            )
    try:
        build()
        for name in TOOLS:
            tool(name)
    except NoToolchain as missing:
        for item in items:
            if "tests/e2e/" in item.nodeid:
                item.add_marker(pytest.mark.skip(reason=str(missing)))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if EXTERNAL:
        found = Cluster(Path(EXTERNAL))
        _ABOUT.append(f"e2e: kube-apiserver {found.version} from {EXTERNAL}")
        yield found
        return
    plane = ControlPlane(build()).start()
    try:
        local = Cluster(plane.admin, plane)
        # The node that tests bind pods to (there is no kubelet here): force-delete lets a pod of a
        # node that does not exist go, as after `kubectl delete node`.
        local.core.create_node({"metadata": {"name": FAKE_NODE}})
        _ABOUT.append(
            f"e2e: kube-apiserver {local.version} (built from k8s.io/kubernetes, "
            f"with etcd and kube-controller-manager) at {plane.server}"
        )
        yield local
    except BaseException:
        for name in ("kube-apiserver", "kube-controller-manager", "etcd"):
            print(f"--- {name} log ---\n{plane.log(name)}")
        raise
    finally:
        plane.stop()


class Nodes:
    """The one node cluster a machine can hold (its ports and host paths are fixed): started
    when a module first needs it, kept for the next, stopped for a test that starts its own
    (`python -m tests.e2e.controlplane run --node`) and at the end of the session."""

    def __init__(self) -> None:
        self.running: NodeCluster | None = None

    def get(self) -> NodeCluster:
        if EXTERNAL:
            pytest.skip(
                "the node tests stop and start their own kubelet; a kubeconfig's is not ours"
            )
        require(node.missing(), "a node")
        if self.running is None:
            self.running = NodeCluster().start()
            _ABOUT.append(
                f"e2e: a real node ({node.NAME}: kubelet, containerd, runc) at "
                f"{self.running.plane.server}"
            )
        return self.running

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None


@pytest.fixture(scope="session")
def nodes() -> Iterator[Nodes]:
    found = Nodes()
    yield found
    found.stop()


@pytest.fixture(scope="module")
def node_cluster(nodes: Nodes) -> Iterator[NodeCluster]:
    running = nodes.get()
    try:
        yield running
    except BaseException:
        print(running.logs())
        raise


@pytest.fixture(scope="session")
def default_class(cluster: Cluster) -> str:
    return cluster.default_storage_class()


@pytest.fixture(scope="session")
def webhook(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    work = tmp_path_factory.mktemp("webhook")
    running = InClusterWebhook(cluster, work) if EXTERNAL else LocalWebhook(cluster, work)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def namespaced(cluster: Cluster, webhook: Webhook, default_class: str) -> Iterator[Install]:
    with Install(cluster, webhook, "namespaced") as install:
        yield install


@pytest.fixture(scope="module")
def cluster_wide(cluster: Cluster, webhook: Webhook, default_class: str) -> Iterator[Install]:
    with Install(cluster, webhook, "cluster-wide") as install:
        yield install


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _ABOUT:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def policy_report_crd(cluster: Cluster) -> str:
    """deploy/crds/policyreports.yaml, applied and established."""
    import yaml

    from tests.e2e.cluster import wait_for
    from tests.support import ROOT

    crd = yaml.safe_load((ROOT / "deploy" / "crds" / "policyreports.yaml").read_text())
    cluster.apply(crd)
    extensions = k8s.ApiextensionsV1Api(cluster.api)

    def established() -> bool:
        status = extensions.read_custom_resource_definition(crd["metadata"]["name"]).status
        return any(c.type == "Established" and c.status == "True" for c in status.conditions or [])

    wait_for(established, what="the PolicyReport CRD")
    return str(crd["metadata"]["name"])
