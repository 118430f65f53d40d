"""Public charts through their whole life with the cluster-wide install as shipped: every
corpus manifest (../shared/corpus) installed, re-applied, replaced, upgraded with Helm,
scaled and uninstalled with the real kubectl and helm, and its namespace deleted. Every
step must succeed exactly as it would without us.

The lifecycle, per manifest, in a namespace of its own:
1. install with server-side apply (what Flux and Argo CD do), then re-apply it unchanged,
   server-side and client-side (`kubectl apply`), then `kubectl replace` it;
2. scale each multi-replica set down by one and back (`kubectl scale`: the scale subresource);
3. uninstall (`kubectl delete -f`), then the same manifest as a one-template Helm chart:
   `helm install`, `helm upgrade` with the same values, `helm upgrade` with one value changed
   (an annotation on every set's pod template: a rolling update), `helm uninstall`;
4. delete the namespace: gone within 60 s (the namespace controller is never refused).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiException

from tests.e2e.cluster import Cluster, Install
from tests.e2e.conftest import EXTERNAL
from tests.e2e.controlplane import BIN, build, tool
from tests.test_corpus import CORPUS, EXPECTED

FILES = sorted(p.name for p in CORPUS.glob("*.yaml"))
CLUSTER_SCOPED = {"StorageClass"}
REVISION = "__E2E_REVISION__"


def kubectl() -> Path:
    """kubectl built with the control plane (else the one on PATH for an external cluster)."""
    if not (BIN / "kubectl").exists() and EXTERNAL and shutil.which("kubectl"):
        return Path(str(shutil.which("kubectl")))
    return build() / "kubectl"


def run(cluster: Cluster, *args: str, tool_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool_path), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def documents(name: str, namespace: str, *, cluster_scoped: bool = True) -> list[dict[str, Any]]:
    """The manifest's objects, moved into `namespace` (references to their old namespace in
    RoleBinding subjects too); without its cluster-scoped objects when told (the reference
    run, which must not fight over them)."""
    docs = [
        d
        for d in yaml.safe_load_all((CORPUS / name).read_text())
        if d and (cluster_scoped or d["kind"] not in CLUSTER_SCOPED)
    ]
    for doc in docs:
        meta = doc.setdefault("metadata", {})
        old = meta.get("namespace")
        if doc["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = namespace
        for subject in doc.get("subjects") or []:
            if subject.get("namespace") in (old, None):
                subject["namespace"] = namespace
    return docs


def write(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def chart(directory: Path, docs: list[dict[str, Any]]) -> Path:
    """The manifest as a one-template chart; `revision` annotates every set's pod template.

    Helm hooks (etcd's pre-upgrade Job) are left out: Helm waits for a hook Job to finish,
    and with no kubelet its pod never runs, with or without us."""
    docs = [
        d
        for d in docs
        if "helm.sh/hook" not in ((d.get("metadata") or {}).get("annotations") or {})
    ]
    (directory / "templates").mkdir(parents=True)
    (directory / "Chart.yaml").write_text("apiVersion: v2\nname: corpus\nversion: 0.1.0\n")
    (directory / "values.yaml").write_text("revision: one\n")
    for doc in docs:
        if doc["kind"] == "StatefulSet":
            template = doc["spec"].setdefault("template", {}).setdefault("metadata", {})
            template["annotations"] = template.get("annotations") or {}
            template["annotations"]["e2e.stateful-guard.io/revision"] = REVISION
    text = yaml.safe_dump_all(docs, sort_keys=False)
    # Escape any {{ in the rendered charts' own text (none today), then place the value.
    text = text.replace("{{", '{{ "{{" }}').replace(REVISION, "{{ .Values.revision | quote }}")
    (directory / "templates" / "all.yaml").write_text(text)
    return directory


def multi_replica_sets(docs: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [
        (d["metadata"]["name"], int(d["spec"].get("replicas", 1)))
        for d in docs
        if d["kind"] == "StatefulSet" and int(d["spec"].get("replicas", 1)) > 1
    ]


def namespace_gone(cluster: Cluster, namespace: str, *, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            cluster.core.read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 404:
                return time.monotonic() - started
            raise
        time.sleep(0.5)
    status = cluster.core.read_namespace(namespace).status
    raise AssertionError(f"namespace {namespace} still there after {within} s: {status}")


class Lockstep:
    """Each step in our namespace and in a reference namespace the webhook never sees
    (labelled stateful-guard.io/mode=off): it must succeed in ours whenever it does there,
    and fail in ours only where it fails there too (the API server's own rules, not ours)."""

    def __init__(self, cluster: Cluster, name: str, work: Path) -> None:
        self.cluster, self.name, self.work = cluster, name, work
        stem = Path(name).stem
        self.ours, self.reference = f"corpus-{stem}"[:63], f"corpus-off-{stem}"[:63]
        cluster.core.create_namespace({"metadata": {"name": self.ours}})
        cluster.core.create_namespace(
            {"metadata": {"name": self.reference, "labels": {"stateful-guard.io/mode": "off"}}}
        )
        self.same_failures: list[str] = []

    def docs(self, namespace: str) -> list[dict[str, Any]]:
        return documents(self.name, namespace, cluster_scoped=namespace == self.ours)

    def step(self, tool_path: Path, *args: str) -> None:
        """`args` with {ns}, {manifest} and {chart} filled in for each namespace."""
        done = {}
        for namespace in (self.ours, self.reference):
            where = self.work / namespace
            where.mkdir(exist_ok=True)
            manifest = where / self.name
            if not manifest.exists():
                write(manifest, self.docs(namespace))
                chart(where / "chart", self.docs(namespace))
            filled = [
                a.format(ns=namespace, manifest=manifest, chart=where / "chart") for a in args
            ]
            done[namespace] = run(self.cluster, *filled, tool_path=tool_path)
        ours, reference = done[self.ours], done[self.reference]
        what = f"{tool_path.name} {' '.join(args)}"
        assert ours.returncode == 0 or reference.returncode != 0, (
            f"{what} failed with stateful-guard and passes without it:\n{ours.stderr}"
        )
        assert reference.returncode == 0 or ours.returncode != 0, (
            f"{what} passed with stateful-guard and fails without it:\n{reference.stderr}"
        )
        if ours.returncode != 0:
            self.same_failures.append(f"{what}: {ours.stderr.strip()[:300]}")


@pytest.mark.parametrize("name", FILES)
def test_public_chart_lifecycle(
    name: str, cluster: Cluster, cluster_wide: Install, tmp_path: Path
) -> None:
    ctl, helm = kubectl(), tool("helm")
    both = Lockstep(cluster, name, tmp_path)
    docs = documents(name, both.ours)
    manifest = ["-n", "{ns}", "-f", "{manifest}"]

    both.step(ctl, "apply", "--server-side", "--field-manager=flux", *manifest)
    both.step(ctl, "apply", "--server-side", "--field-manager=flux", *manifest)
    both.step(ctl, "apply", *manifest)
    both.step(ctl, "replace", *manifest)
    for set_name, replicas in multi_replica_sets(docs):
        for count in (replicas - 1, replicas):
            both.step(ctl, "scale", "-n", "{ns}", f"statefulset/{set_name}", f"--replicas={count}")
    both.step(ctl, "delete", "--wait=true", "--timeout=60s", *manifest)

    both.step(helm, "install", "corpus", "{chart}", "-n", "{ns}")
    both.step(helm, "upgrade", "corpus", "{chart}", "-n", "{ns}")
    both.step(helm, "upgrade", "corpus", "{chart}", "-n", "{ns}", "--set", "revision=two")
    for set_name, _ in multi_replica_sets(docs):
        stored = cluster.apps.read_namespaced_stateful_set(set_name, both.ours)
        annotations = stored.spec.template.metadata.annotations or {}
        assert annotations.get("e2e.stateful-guard.io/revision") == "two"
    both.step(helm, "uninstall", "corpus", "-n", "{ns}", "--wait")

    for namespace in (both.ours, both.reference):
        cluster.core.delete_namespace(namespace)
    namespace_gone(cluster, both.ours, within=60)
    # What failed fails without us too (the API server's own rules); say it in the log.
    for line in both.same_failures:
        print(f"{name}: also fails without stateful-guard: {line}")
    # Only a replace may fail both ways: it re-sends a manifest without the fields the API
    # server filled at creation, which some kinds keep immutable (a claim's volumeName).
    assert all(f.startswith(f"{ctl.name} replace") for f in both.same_failures), both.same_failures


@pytest.mark.skipif(bool(EXTERNAL), reason="the in-cluster webhook reads its ConfigMap only")
def test_stateful_practices_at_enforce_refuses_only_what_is_listed(
    cluster: Cluster, cluster_wide: Install
) -> None:
    """The stricter choice a platform team may make: each refusal is justified in
    tests/corpus/findings.yaml (a server-side dry run: nothing is stored)."""
    webhook = cluster_wide.webhook
    shipped = webhook.config.read_text()
    config = yaml.safe_load(shipped) or {}
    config.setdefault("policies", {})["stateful-practices"] = {"mode": "enforce"}
    webhook.stop()
    webhook.start(yaml.safe_dump(config))
    refused = []
    try:
        for name in FILES:
            namespace = f"corpus-strict-{Path(name).stem}"[:63]
            cluster.core.create_namespace({"metadata": {"name": namespace}})
            try:
                for doc in documents(name, namespace):
                    if doc["kind"] != "StatefulSet":
                        continue
                    try:
                        cluster.apps.create_namespaced_stateful_set(namespace, doc, dry_run="All")
                    except ApiException as exc:
                        assert exc.status == 403 and "[stateful-practices]" in exc.body, exc.body
                        refused.append((name, doc["metadata"]["name"]))
            finally:
                cluster.core.delete_namespace(namespace)
    finally:
        webhook.stop()
        webhook.start(shipped)
    listed = yaml.safe_load(EXPECTED.read_text())["enforce-stateful-practices"]
    assert sorted(refused) == sorted((e["file"], e["finding"].rsplit("/", 1)[1]) for e in listed)
