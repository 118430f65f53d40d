"""The optional kustomize components, composed as a user would and validated by the real API
server (server-side dry run): cert-manager's objects against cert-manager's own CRDs (from its
Go module; cert-manager itself needs a node to run), the NetworkPolicy, the client-CA
Deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.e2e.cluster import NAMESPACE, WEBHOOK_KINDS, Cluster, wait_for
from tests.e2e.controlplane import cert_manager_crds
from tests.e2e.test_manifests import keyed, with_components


@pytest.fixture(scope="module")
def cert_manager(cluster: Cluster) -> None:
    for crd in cert_manager_crds():
        cluster.apply({"apiVersion": "apiextensions.k8s.io/v1", "kind": crd["kind"], **crd})

    def served() -> bool:
        """The kinds are served (the dynamic client's discovery cache predates them)."""
        cluster.dynamic.resources.invalidate_cache()
        for kind in ("Issuer", "Certificate"):
            resource = cluster.dynamic.resources.get(api_version="cert-manager.io/v1", kind=kind)
            resource.get(namespace="default")  # a list: the CRD is established
        return True

    wait_for(served, what="cert-manager's kinds to be served")
    try:
        cluster.core.create_namespace({"metadata": {"name": NAMESPACE}})
    except k8s.ApiException as exc:
        if exc.status != 409:
            raise


def dry_run(cluster: Cluster, obj: dict[str, Any]) -> Any:
    resource = cluster.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    return resource.server_side_apply(
        body=obj,
        namespace=obj["metadata"].get("namespace"),
        field_manager="stateful-guard-e2e",
        dry_run="All",
        force_conflicts=True,
    )


def test_cert_manager_component_is_valid_and_feeds_the_ca_injection(
    cluster: Cluster, cert_manager: None, tmp_path: Path
) -> None:
    objects = with_components(tmp_path, "cert-manager")
    issued = [o for o in objects if o["apiVersion"] == "cert-manager.io/v1"]
    assert sorted(o["kind"] for o in issued) == ["Certificate", "Certificate", "Issuer", "Issuer"]
    for obj in issued:
        stored = dry_run(cluster, obj)  # the CRD's schema is checked by the API server
        assert stored.metadata.name == obj["metadata"]["name"]
    serving = keyed(issued)[("Certificate", "stateful-guard-tls")]
    deployment = keyed(objects)[("Deployment", "stateful-guard")]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert serving["spec"]["secretName"] == volumes["tls"]["secret"]["secretName"]
    for config in (o for o in objects if o["kind"] in WEBHOOK_KINDS):
        injected = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        assert injected == f"{NAMESPACE}/stateful-guard-tls"
        service = config["webhooks"][0]["clientConfig"]["service"]
        assert f"{service['name']}.{service['namespace']}.svc" in serving["spec"]["dnsNames"]


@pytest.mark.parametrize("component", ["network-policy", "client-ca"])
def test_components_pass_the_api_servers_validation(
    cluster: Cluster, cert_manager: None, tmp_path: Path, component: str
) -> None:
    objects = keyed(with_components(tmp_path, component))
    for key in [("NetworkPolicy", "stateful-guard"), ("Deployment", "stateful-guard")]:
        if key in objects:
            assert dry_run(cluster, objects[key]).metadata.name == "stateful-guard"
