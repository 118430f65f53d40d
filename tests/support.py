"""Helpers shared by the tests: build admission requests and reviews with little typing."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from policies.request import AdmissionRequest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def stateful_guard(
    *args: str, cwd: Path = ROOT, feed: str | None = None, columns: int = 100, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, `feed` on its standard input, in a terminal `columns`
    wide; never raises on its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", *args],
        cwd=cwd,
        input=feed,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": str(columns)},
        **popen,
    )


# (group, version, resource) for the kinds the tests send.
RESOURCES = {
    "Pod": ("", "v1", "pods"),
    "PersistentVolumeClaim": ("", "v1", "persistentvolumeclaims"),
    "Service": ("", "v1", "services"),
    "StatefulSet": ("apps", "apps/v1", "statefulsets"),
    "Deployment": ("apps", "apps/v1", "deployments"),
    "ReplicaSet": ("apps", "apps/v1", "replicasets"),
    "Scale": ("apps", "apps/v1", "statefulsets"),  # the statefulsets/scale subresource
    "Eviction": ("", "v1", "pods"),  # the pods/eviction subresource (kind: policy/v1)
    "GuardException": ("stateful-guard.io", "stateful-guard.io/v1alpha1", "guardexceptions"),
}
_uids = itertools.count(1)


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def example(file: str, kind: str, name: str | None = None) -> dict[str, Any]:
    """One object from examples/ by kind (and name)."""
    for doc in load_yaml(EXAMPLES / file):
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
            return doc
    raise LookupError(f"{kind} {name} not in {file}")


def request_dict(
    operation: str,
    obj: dict[str, Any] | None = None,
    *,
    old: dict[str, Any] | None = None,
    namespace: str = "default",
    name: str | None = None,
    username: str = "alice",
    groups: list[str] | None = None,
    options: dict[str, Any] | None = None,
    dry_run: bool = False,
    sub_resource: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """An AdmissionRequest as the API server sends it (camelCase), derived from the object."""
    subject = obj if obj is not None else old
    assert subject is not None, "a request needs an object or an oldObject"
    group, version, resource = RESOURCES[subject["kind"]]
    version = version.split("/")[-1]
    request: dict[str, Any] = {
        "uid": f"uid-{next(_uids)}",
        "kind": {"group": group, "version": version, "kind": subject["kind"]},
        "resource": {"group": group, "version": version, "resource": resource},
        "subResource": sub_resource,
        "name": subject.get("metadata", {}).get("name", "") if name is None else name,
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": username, "groups": groups or ["system:authenticated"]},
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
        "options": options,
    }
    request.update(extra)
    return request


def make_request(operation: str, obj: dict[str, Any] | None = None, **kw: Any) -> AdmissionRequest:
    return AdmissionRequest.model_validate(request_dict(operation, obj, **kw))


def review_body(request: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def statefulset_pod(
    name: str = "mysql-1",
    *,
    set_name: str = "mysql",
    namespace: str = "db",
    node: str | None = "node-1",
    claims: tuple[str, ...] = ("data-mysql-1",),
    **metadata: Any,
) -> dict[str, Any]:
    """A pod as the StatefulSet controller makes it, scheduled on `node`."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": set_name, "statefulset.kubernetes.io/pod-name": name},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": set_name,
                    "uid": "0b7d3b36-5a43-4c5e-9a53-1f7a3c0e2d11",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            **metadata,
        },
        "spec": {
            "containers": [{"name": "app", "image": "mysql:8.4"}],
            "volumes": [
                {"name": c.split("-")[0], "persistentVolumeClaim": {"claimName": c}} for c in claims
            ],
        },
        "status": {"phase": "Running"},
    }
    if node:
        pod["spec"]["nodeName"] = node
    return pod
