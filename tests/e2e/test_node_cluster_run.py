"""`python -m tests.e2e.controlplane run --node --install`: the local cluster for users and
checks, brought up, used and stopped as a user would (a separate process, SIGINT)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e import node
from tests.e2e.cluster import NAMESPACE, Cluster, require, wait_for
from tests.e2e.images import BUSYBOX, WEBHOOK
from tests.support import ROOT


def test_run_node_install_prints_kubeconfig_and_stops_everything(  # nodes: conftest.Nodes
    nodes: Any, tmp_path: Path
) -> None:
    require(node.missing(), "a node")
    nodes.stop()  # one node cluster per machine
    log = tmp_path / "run.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.controlplane", "run", "--node", "--install"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the first line it prints is the kubeconfig's
        assert line.startswith("KUBECONFIG="), f"{line!r}; log: {log.read_text()[-3000:]}"
        kubeconfig = Path(line.strip().split("=", 1)[1])
        api = Cluster(kubeconfig)
        deployment = api.apps.read_namespaced_deployment("stateful-guard", NAMESPACE)
        assert deployment.status.available_replicas == 2, "printed once available"
        # The images it loaded serve pods that name them with IfNotPresent.
        namespace = api.namespace(mode=None)
        for image in (WEBHOOK, BUSYBOX):
            name = image.rsplit("/", 1)[1].split(":")[0]
            api.core.create_namespaced_pod(
                namespace,
                {
                    "metadata": {"name": name},
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"],
                            }
                        ]
                    },
                },
            )
        wait_for(
            lambda: all(
                p.status.phase == "Running" for p in api.core.list_namespaced_pod(namespace).items
            ),
            timeout=60,
            what="pods of the loaded images running",
        )
        work = kubeconfig.parent
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=180)
    assert process.returncode == 0, log.read_text()[-3000:]
    assert not work.exists(), "its work directory is removed"
    assert not Path(f"/sys/class/net/{node.BRIDGE}").exists(), "the pods' bridge is removed"
    left = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True).stdout
    assert not left, f"processes left running: {left}"
