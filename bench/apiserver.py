"""Latency the API server adds: the same creates and deletes with no webhook, with our
webhooks (the namespaced install from deploy/, the webhook on core 0), with the bare
baseline endpoint registered the same way (plain, and answering mutations with our patch),
and with a ValidatingAdmissionPolicy doing the force-delete check in CEL, on the e2e control
plane. The webhook configurations take turns; each figure is the median of its turns.

End-to-end latencies drift with this machine; the API server's own histogram of the time it
spends calling each webhook (`apiserver_admission_webhook_admission_duration_seconds`: the
call, and for a mutation applying its patch) says what each webhook costs per call."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import baseline
from bench.http import SERVER_CORE, pin
from bench.inprocess import percentile
from policies.request import AdmissionRequest
from tests.e2e.cluster import Cluster, Install, LocalWebhook, statefulset, wait_for
from tests.e2e.controlplane import ControlPlane, build
from tests.support import ROOT, request_dict
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine

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


DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
WEBHOOK_SECONDS = "apiserver_admission_webhook_admission_duration_seconds"


def metrics_text(cluster: Cluster) -> str:
    answer = cluster.api.call_api("GET", f"{cluster.api.configuration.host}/metrics")
    answer.read()
    return str(answer.data.decode())


def webhook_seconds(metrics: str) -> dict[str, tuple[float, float]]:
    """The API server's time calling each webhook so far, from its /metrics: "<webhook>
    <operation>" -> (sum of seconds, calls)."""
    totals: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(metrics):
        if family.name != WEBHOOK_SECONDS:
            continue
        for sample in family.samples:
            key = f"{sample.labels['name']} {sample.labels['operation']}"
            seconds, calls = totals.get(key, (0.0, 0.0))
            if sample.name.endswith("_sum"):
                totals[key] = (seconds + sample.value, calls)
            elif sample.name.endswith("_count"):
                totals[key] = (seconds, calls + sample.value)
    return totals


def webhook_calls(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], rounds: int
) -> dict[str, dict[str, float]]:
    """Between two readings, for each webhook called: the mean milliseconds per call, and
    calls per request (a pod DELETE calls its validating webhooks more than once: for the
    graceful-deletion update, then for the delete itself)."""
    calls_of = {}
    for key, (seconds, calls) in after.items():
        earlier = before.get(key, (0.0, 0.0))
        if calls > earlier[1]:
            calls_of[key] = {
                "ms_per_call": 1000 * (seconds - earlier[0]) / (calls - earlier[1]),
                "calls_per_request": (calls - earlier[1]) / rounds,
            }
    return calls_of


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


def our_patch(storage_class: str) -> list[dict[str, Any]]:
    """The patch our webhooks make for the sets `measure` creates (they differ by name only)."""
    default = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": storage_class, "annotations": {DEFAULT_CLASS: "true"}},
        "provisioner": "example.com/bench",
    }
    request = request_dict("CREATE", statefulset("db-0"), namespace="bench", dry_run=True)
    patch = Engine(MemoryView([default])).mutate(AdmissionRequest.model_validate(request)).patch
    assert patch, "our mutators change the bench's sets"
    return list(patch)


class BaselineWebhook(LocalWebhook):
    """The bare baseline endpoint registered in our webhook configurations: what any webhook
    costs through the API server on this machine (TLS, the AdmissionReview round trip). With
    a patch, it answers each mutation with it, as a webhook that spent nothing making it."""

    def __init__(
        self, cluster: Cluster, work: Path, *, patch: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(cluster, work)
        self.patch = patch

    def start(self, config_text: str) -> None:
        del config_text
        patch_file = None
        if self.patch:
            patch_file = self.work / "patch.json"
            patch_file.write_text(json.dumps(self.patch))
        self.process = subprocess.Popen(
            baseline.command(self.port, self.certs.cert, self.certs.key, patch_file),
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


def measured(cluster: Cluster, rounds: int) -> dict[str, Any]:
    """Latencies in a fresh guarded namespace, after a warm-up, and the API server's time
    per call to each webhook meanwhile (`webhooks`)."""
    namespace = cluster.namespace(mode="enforce")
    measure(cluster, namespace, 20)
    before = webhook_seconds(metrics_text(cluster))
    latencies: dict[str, Any] = measure(cluster, namespace, rounds)
    after = webhook_seconds(metrics_text(cluster))
    latencies["webhooks"] = webhook_calls(before, after, rounds)
    return latencies


def with_webhook(cluster: Cluster, install: Install, rounds: int) -> dict[str, Any]:
    """Latencies with a webhook registered through deploy/'s configurations, on core 0."""
    with install:
        assert isinstance(install.webhook, LocalWebhook) and install.webhook.process is not None
        pin(install.webhook.process.pid, SERVER_CORE)
        return measured(cluster, rounds)


def run(work: Path, rounds: int = 100, turns: int = 3) -> dict[str, dict[str, Any]]:
    """Each configuration in turn, `turns` times, `rounds` creates and deletes each time; the
    medians of the turns, so all go through the same drift of this machine's speed."""
    plane = ControlPlane(build()).start()
    try:
        cluster = Cluster(plane.admin, plane)
        patch = our_patch(cluster.default_storage_class())
        installs: dict[str, Callable[[Path], Install] | None] = {
            "no webhook": None,
            "stateful-guard webhooks": lambda at: Install(  # production defaults
                cluster, LocalWebhook(cluster, at, background=()), "namespaced"
            ),
            "bare webhook (baseline endpoint)": lambda at: BaselineInstall(
                cluster, BaselineWebhook(cluster, at), "namespaced"
            ),
            "bare webhook answering our patch": lambda at: BaselineInstall(
                cluster, BaselineWebhook(cluster, at, patch=patch), "namespaced"
            ),
        }
        taken: dict[str, list[dict[str, Any]]] = {name: [] for name in installs}
        for turn in range(turns):
            for number, (name, install) in enumerate(installs.items()):
                taken[name].append(
                    measured(cluster, rounds)
                    if install is None
                    else with_webhook(cluster, install(work / f"{number}-{turn}"), rounds)
                )
        results = {name: medians(each) for name, each in taken.items()}
        cluster.apply(VAP)
        cluster.apply(VAP_BINDING)
        probe_ns = cluster.namespace(mode="enforce")
        probe = f"probe-{uuid.uuid4().hex[:4]}"
        wait_for(
            lambda: cluster.core.create_namespaced_pod(probe_ns, pod(probe)),
            what="the policy in force",
        )
        results["ValidatingAdmissionPolicy"] = measured(cluster, rounds * turns)
        return results
    finally:
        plane.stop()


def medians(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the turns (webhook figures where every turn has them)."""
    result: dict[str, Any] = {
        key: statistics.median(turn[key] for turn in turns) for key in turns[0] if key != "webhooks"
    }
    called = set.intersection(*(set(turn["webhooks"]) for turn in turns))
    result["webhooks"] = {
        key: {
            figure: statistics.median(turn["webhooks"][key][figure] for turn in turns)
            for figure in turns[0]["webhooks"][key]
        }
        for key in sorted(called)
    }
    return result


if __name__ == "__main__":
    import tempfile

    for key, value in run(Path(tempfile.mkdtemp()), rounds=50, turns=2).items():
        print(key, json.dumps(value, indent=1))
