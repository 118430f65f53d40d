"""Latency the API server adds: the same creates and deletes with no webhook, with our
webhooks (the namespaced install from deploy/, the webhook on core 0), and with a
ValidatingAdmissionPolicy doing the force-delete check in CEL, on the e2e control plane."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.http import SERVER_CORE, pin
from bench.inprocess import percentile
from tests.e2e.cluster import Cluster, Install, LocalWebhook, statefulset, wait_for
from tests.e2e.controlplane import ControlPlane, build
from tests.support import ROOT

VAP = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicy",
    "metadata": {"name": "bench-force-delete"},
    "spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                    "operations": ["DELETE"],
                }
            ]
        },
        "validations": [
            {
                "expression": "!has(request.options.gracePeriodSeconds) || "
                "request.options.gracePeriodSeconds != 0 || "
                "!has(oldObject.spec.nodeName) || "
                "!has(oldObject.metadata.ownerReferences) || "
                "!oldObject.metadata.ownerReferences.exists(o, o.kind == 'StatefulSet')",
                "message": "force deletion of a scheduled StatefulSet pod",
            }
        ],
    },
}
VAP_BINDING = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicyBinding",
    "metadata": {"name": "bench-force-delete"},
    "spec": {"policyName": "bench-force-delete", "validationActions": ["Deny"]},
}


def pod(name: str) -> dict[str, Any]:
    """A pod the StatefulSet webhook rules see (its label), never scheduled: deletable."""
    return {
        "metadata": {"name": name, "labels": {"statefulset.kubernetes.io/pod-name": name}},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.37"}]},
    }


def measure(cluster: Cluster, namespace: str, rounds: int) -> dict[str, float]:
    creates, deletes = [], []
    for i in range(rounds):
        name = f"db-{i}"
        started = time.perf_counter()
        cluster.apps.create_namespaced_stateful_set(namespace, statefulset(name), dry_run="All")
        creates.append((time.perf_counter() - started) * 1000)
        cluster.core.create_namespaced_pod(namespace, pod(name))
        started = time.perf_counter()
        cluster.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        deletes.append((time.perf_counter() - started) * 1000)
    return {
        "create_p50_ms": percentile(creates, 0.5),
        "create_p99_ms": percentile(creates, 0.99),
        "delete_p50_ms": percentile(deletes, 0.5),
        "delete_p99_ms": percentile(deletes, 0.99),
    }


class BaselineWebhook(LocalWebhook):
    """The bare baseline endpoint registered in our webhook configurations: what any webhook
    costs through the API server on this machine (TLS, the AdmissionReview round trip)."""

    def start(self, config_text: str) -> None:
        del config_text
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.baseline",
                str(self.port),
                str(self.certs.cert),
                str(self.certs.key),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            lambda: socket.create_connection(("127.0.0.1", self.port), timeout=1),
            what="the baseline endpoint",
        )


class BaselineInstall(Install):
    def _wait_until_called(self) -> None:
        time.sleep(3)  # the bare endpoint mutates nothing to observe: give the API server time


def measured(cluster: Cluster, rounds: int) -> dict[str, float]:
    """Latencies in a fresh guarded namespace, after a warm-up."""
    namespace = cluster.namespace(mode="enforce")
    measure(cluster, namespace, 20)
    return measure(cluster, namespace, rounds)


def with_webhook(cluster: Cluster, install: Install, rounds: int) -> dict[str, float]:
    """Latencies with a webhook registered through deploy/'s configurations, on core 0."""
    with install:
        assert isinstance(install.webhook, LocalWebhook) and install.webhook.process is not None
        pin(install.webhook.process.pid, SERVER_CORE)
        return measured(cluster, rounds)


def run(work: Path, rounds: int = 200) -> dict[str, dict[str, float]]:
    plane = ControlPlane(build()).start()
    try:
        cluster = Cluster(plane.admin, plane)
        cluster.default_storage_class()
        results = {"no webhook": measured(cluster, rounds)}
        ours = LocalWebhook(cluster, work, background=())  # production defaults
        results["stateful-guard webhooks"] = with_webhook(
            cluster, Install(cluster, ours, "namespaced"), rounds
        )
        bare = BaselineWebhook(cluster, work / "baseline")
        results["bare webhook (baseline endpoint)"] = with_webhook(
            cluster, BaselineInstall(cluster, bare, "namespaced"), rounds
        )
        cluster.apply(VAP)
        cluster.apply(VAP_BINDING)
        probe_ns = cluster.namespace(mode="enforce")
        probe = f"probe-{uuid.uuid4().hex[:4]}"
        wait_for(
            lambda: cluster.core.create_namespaced_pod(probe_ns, pod(probe)),
            what="the policy in force",
        )
        results["ValidatingAdmissionPolicy"] = measured(cluster, rounds)
        return results
    finally:
        plane.stop()


if __name__ == "__main__":
    import tempfile

    for key, value in run(Path(tempfile.mkdtemp()), rounds=100).items():
        print(key, {k: round(v, 2) for k, v in value.items()})
