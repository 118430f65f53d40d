"""The webhook runs as its ServiceAccount: the RBAC in deploy/ is enough (the webhook became
ready watching as that identity) and no more (what it may do, asked of the API server)."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from tests.e2e.cluster import NAMESPACE, SERVICE_ACCOUNT, Cluster, Install

ALLOWED = [
    ("list", "", "services", ""),
    ("watch", "", "services", ""),
    ("create", "", "services", "db"),
    ("patch", "", "services", "db"),
    ("delete", "", "services", "db"),
    ("list", "", "persistentvolumeclaims", ""),
    ("watch", "", "namespaces", ""),
    ("list", "apps", "statefulsets", ""),
    ("watch", "storage.k8s.io", "storageclasses", ""),
    ("watch", "apps", "deployments", ""),
    ("watch", "apps", "replicasets", ""),
    ("watch", "", "pods", ""),
    ("watch", "", "nodes", ""),
    ("create", "policy", "poddisruptionbudgets", "db"),
    ("patch", "policy", "poddisruptionbudgets", "db"),
    ("delete", "policy", "poddisruptionbudgets", "db"),
    ("create", "", "events", "db"),
    ("patch", "", "events", "db"),
    ("list", "", "events", ""),
    ("watch", "stateful-guard.io", "guardexceptions", ""),
    ("create", "wgpolicyk8s.io", "policyreports", "db"),
    ("update", "wgpolicyk8s.io", "policyreports", "db"),
    ("create", "coordination.k8s.io", "leases", NAMESPACE),
    ("update", "coordination.k8s.io", "leases", NAMESPACE),
]
DENIED = [
    ("list", "", "secrets", ""),
    ("get", "", "secrets", NAMESPACE),
    ("delete", "", "pods", "db"),
    ("delete", "", "persistentvolumeclaims", "db"),
    ("update", "apps", "statefulsets", "db"),
    ("update", "", "services", "db"),
    ("create", "coordination.k8s.io", "leases", "kube-system"),
    ("create", "", "pods", "db"),
    ("patch", "", "nodes", ""),
    ("update", "policy", "poddisruptionbudgets", "db"),
    ("delete", "", "events", "db"),
    ("create", "stateful-guard.io", "guardexceptions", "db"),
    ("delete", "wgpolicyk8s.io", "policyreports", "db"),
    ("update", "apps", "deployments", "db"),
    ("patch", "admissionregistration.k8s.io", "validatingwebhookconfigurations", ""),
]


def can(cluster: Cluster, verb: str, group: str, resource: str, namespace: str) -> bool:
    review = k8s.AuthorizationV1Api(cluster.api).create_subject_access_review(
        {
            "spec": {
                "user": SERVICE_ACCOUNT,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{NAMESPACE}",
                    "system:authenticated",
                ],
                "resourceAttributes": {
                    "verb": verb,
                    "group": group,
                    "resource": resource,
                    "namespace": namespace,
                },
            }
        }
    )
    return bool(review.status.allowed)


@pytest.mark.parametrize(("verb", "group", "resource", "namespace"), ALLOWED)
def test_allowed(
    cluster: Cluster, namespaced: Install, verb: str, group: str, resource: str, namespace: str
) -> None:
    assert can(cluster, verb, group, resource, namespace)


@pytest.mark.parametrize(("verb", "group", "resource", "namespace"), DENIED)
def test_denied(
    cluster: Cluster, namespaced: Install, verb: str, group: str, resource: str, namespace: str
) -> None:
    assert not can(cluster, verb, group, resource, namespace)
