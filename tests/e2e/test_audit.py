"""Live audits through the real API server: PolicyReports per namespace, the same findings as
an offline audit of the same manifests, and the leader's background refresh."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from tests.e2e.cluster import Cluster, Install, wait_for
from tests.support import ROOT

GALLERY = ROOT / "tests" / "gallery"


def in_namespace(file: str, namespace: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((GALLERY / file).read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def audit_json(*args: str) -> tuple[int, dict[str, Any]]:
    run = subprocess.run(
        [sys.executable, "-m", "webhook.cli", "audit", "-o", "json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode in (0, 1), run.stderr
    return run.returncode, json.loads(run.stdout)


def findings(data: dict[str, Any], namespaces: set[str]) -> dict[str, set[tuple[str, str]]]:
    return {
        f"{r['object']['kind']} {r['object']['namespace']}/{r['object']['name']}": {
            (f["policy"], f["result"]) for f in r["findings"]
        }
        for r in data["results"]
        if r["object"]["namespace"] in namespaces
    }


def report(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return k8s.CustomObjectsApi(cluster.api).get_namespaced_custom_object(  # type: ignore[no-any-return]
        "wgpolicyk8s.io", "v1alpha2", namespace, "policyreports", "stateful-guard"
    )


def test_cluster_audit_writes_reports_matching_the_offline_audit(
    cluster: Cluster, policy_report_crd: str, tmp_path: Path
) -> None:
    namespaces = {
        cluster.namespace(mode=None): "redis.yaml",
        cluster.namespace(mode=None): "elasticsearch.yaml",
    }
    manifests = []
    for namespace, file in namespaces.items():
        for obj in in_namespace(file, namespace):
            cluster.apply(obj)
            manifests.append(obj)
    code, live = audit_json("--cluster", "--kubeconfig", str(cluster.kubeconfig), "--report")
    assert code == 1, "the gallery's refusals fail the audit"

    # Offline: the same manifests, and the cluster's StorageClasses as --objects.
    (tmp_path / "app.yaml").write_text(yaml.safe_dump_all(manifests))
    classes = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            **cluster.api.sanitize_for_serialization(sc),
        }
        for sc in cluster.storage.list_storage_class().items
    ]
    (tmp_path / "classes.yaml").write_text(yaml.safe_dump_all(classes))
    _, offline = audit_json(
        "-f", str(tmp_path / "app.yaml"), "--objects", str(tmp_path / "classes.yaml")
    )
    expected = findings(offline, set(namespaces))
    assert expected, "there is something to compare"
    # The live cluster also has the claims the StatefulSet controller made: compare the rest.
    assert {k: v for k, v in findings(live, set(namespaces)).items() if k in expected} == expected

    redis_ns = next(ns for ns, f in namespaces.items() if f == "redis.yaml")
    first = report(cluster, redis_ns)
    assert first["summary"]["fail"] >= 1 and first["summary"]["pass"] >= 1
    failure = next(r for r in first["results"] if r["policy"] == "shared-volume")
    assert failure["result"] == "fail"
    assert failure["resources"][0]["kind"] == "Deployment"
    assert failure["resources"][0]["name"] == "redis-replicas"
    assert all(r["result"] != "pass" for r in first["results"]), "passes only counted"

    # A report's results carry the second it was made; within the same second the same
    # report is a no-op update, which keeps its resourceVersion.
    time.sleep(1.1)
    audit_json("--cluster", "--kubeconfig", str(cluster.kubeconfig), "--report")
    second = report(cluster, redis_ns)
    assert second["metadata"]["uid"] == first["metadata"]["uid"], "updated in place"
    assert second["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]


def test_background_audit_by_the_leader(
    cluster: Cluster, namespaced: Install, policy_report_crd: str
) -> None:
    """The webhook runs with --audit-interval=2: a namespace not sent to the webhook (opt-in
    install, unlabelled) still gets its report."""
    namespace = cluster.namespace(mode=None)
    for obj in in_namespace("redis.yaml", namespace):
        cluster.apply(obj)

    def refreshed() -> dict[str, Any] | None:
        try:
            found = report(cluster, namespace)
        except k8s.ApiException:
            return None
        return found if found["summary"]["fail"] else None

    found = wait_for(refreshed, timeout=60, what="the background audit's PolicyReport")
    assert "shared-volume" in {r["policy"] for r in found["results"] if r["result"] == "fail"}
