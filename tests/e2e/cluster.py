"""What the e2e tests drive: a cluster (local control plane or a kubeconfig), our manifests
from deploy/ rendered as users render them, and the webhook running as its ServiceAccount."""

from __future__ import annotations

import base64
import copy
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.dynamic import DynamicClient

from certs import files as cert_files
from certs.authority import make_client_cert
from tests.e2e.controlplane import ControlPlane, free_port, tool
from tests.support import ROOT

NAMESPACE = "stateful-guard"  # where deploy/ installs us
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:stateful-guard"
MODE = "stateful-guard.io/mode"
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


# CI sets it: there every e2e prerequisite exists, so a missing one is a failure, not a skip.
STRICT = os.environ.get("STATEFUL_GUARD_E2E_STRICT") == "1"


def require(lacking: list[str], what: str) -> None:
    """Skip (fail where STRICT) when this host lacks what `what` needs."""
    if lacking:
        reason = f"{what} needs {', '.join(lacking)} (.ci/run installs them)"
        if STRICT:
            pytest.fail(f"{reason}; STATEFUL_GUARD_E2E_STRICT is set", pytrace=False)
        pytest.skip(reason)


def wait_for(check: Callable[[], Any], *, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}" + (f": {last}" if last else ""))


def message(error: Exception) -> str:
    """The API server's Status message of a failed call."""
    return str(json.loads(getattr(error, "body", "") or "{}").get("message", ""))


def render(overlay: str) -> list[dict[str, Any]]:
    """deploy/overlays/<overlay> as kustomize renders it."""
    out = subprocess.run(
        [str(tool("kustomize")), "build", str(ROOT / "deploy" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@dataclass
class Cluster:
    kubeconfig: Path
    plane: ControlPlane | None = None
    api: k8s.ApiClient = field(init=False)

    def __post_init__(self) -> None:
        self.api = k8s_config.new_client_from_config(config_file=str(self.kubeconfig))
        self.dynamic = DynamicClient(self.api)
        self.core = k8s.CoreV1Api(self.api)
        self.apps = k8s.AppsV1Api(self.api)
        self.storage = k8s.StorageV1Api(self.api)

    @property
    def version(self) -> str:
        return str(k8s.VersionApi(self.api).get_code().git_version)

    def apply(self, obj: dict[str, Any]) -> Any:
        resource = self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        namespace = obj["metadata"].get("namespace")
        return resource.server_side_apply(
            body=obj, namespace=namespace, field_manager="stateful-guard-e2e", force_conflicts=True
        )

    def delete(self, obj: dict[str, Any]) -> None:
        resource = self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        try:
            resource.delete(
                name=obj["metadata"]["name"], namespace=obj["metadata"].get("namespace")
            )
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise

    def namespace(self, *, mode: str | None, labels: dict[str, str] | None = None) -> str:
        name = f"e2e-{uuid.uuid4().hex[:8]}"
        labels = {**(labels or {}), **({MODE: mode} if mode else {})}
        self.core.create_namespace({"metadata": {"name": name, "labels": labels}})
        # Pods need the namespace's default ServiceAccount (made by its controller).
        wait_for(
            lambda: self.core.read_namespaced_service_account("default", name),
            what=f"default ServiceAccount in {name}",
        )
        return name

    def wait_namespace_gone(self, name: str, timeout: float = 180) -> None:
        """Until a deleted namespace (and so everything in it) is gone."""
        wait_for(
            lambda: not [n for n in self.core.list_namespace().items if n.metadata.name == name],
            timeout=timeout,
            what=f"namespace {name} deleted",
        )

    def default_storage_class(self) -> str:
        """The cluster's default StorageClass, made (Retain, expandable) when it has none."""
        for sc in self.storage.list_storage_class().items:
            if (sc.metadata.annotations or {}).get(
                "storageclass.kubernetes.io/is-default-class"
            ) == "true":
                return str(sc.metadata.name)
        self.storage.create_storage_class(
            {
                "metadata": {
                    "name": "e2e-standard",
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "example.com/e2e",
                "reclaimPolicy": "Retain",
                "allowVolumeExpansion": True,
            }
        )
        return "e2e-standard"


# Pod Security "restricted" (our own namespace enforces it), so tests can run sets there too.
RESTRICTED_CONTAINER = {
    "name": "app",
    "image": "busybox:1.37",
    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
}


def statefulset(
    name: str,
    *,
    service_name: str | None = None,
    storage_class: str | None = None,
    replicas: int = 1,
) -> dict[str, Any]:
    """A small StatefulSet with one claim template; Parallel so the controller makes every
    pod at once (there is no kubelet to make them Ready)."""
    claim: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }
    if storage_class is not None:
        claim["storageClassName"] = storage_class
    spec: dict[str, Any] = {
        "replicas": replicas,
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "containers": [RESTRICTED_CONTAINER],
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 1000,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "terminationGracePeriodSeconds": 30,
            },
        },
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
    }
    if service_name is not None:
        spec["serviceName"] = service_name
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": spec,
    }


def headless_service(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "clusterIP": "None",
            "selector": {"app": app},
            "ports": [{"name": "app", "port": 80}],
        },
    }


class LocalWebhook:
    """`stateful-guard serve` on 127.0.0.1, watching the cluster as our ServiceAccount: a
    client certificate for system:serviceaccount:stateful-guard:stateful-guard, bound only
    by the ClusterRole and Role in deploy/."""

    # The reconcile, its grace and the background audit, fast for tests.
    TEST_BACKGROUND = (
        "--reconcile-interval=1",
        "--managed-service-delay=1",
        "--managed-service-grace=3",
        "--audit-interval=2",
    )

    def __init__(
        self, cluster: Cluster, work: Path, *, background: tuple[str, ...] = TEST_BACKGROUND
    ) -> None:
        assert cluster.plane is not None
        self.background = background
        self.cluster = cluster
        self.work = work
        self.port = free_port()
        self.certs = cert_files.issue(work / "certs", service="stateful-guard", namespace=NAMESPACE)
        self.kubeconfig = cluster.plane.user(
            SERVICE_ACCOUNT,
            groups=("system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"),
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.config = work / "config.yaml"

    def client_context(self, *, with_certificate: bool = True) -> ssl.SSLContext:
        """TLS to the webhook, presenting a client certificate of the e2e CA (as the API
        server does) unless told not to."""
        context = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        if with_certificate:
            assert self.cluster.plane is not None
            pair = make_client_cert(self.cluster.plane.ca, user="e2e-probe")
            pem = self.work / "probe-client.pem"
            pem.write_bytes(pair.cert_pem + pair.key_pem)
            context.load_cert_chain(pem)
        return context

    def client_config(self, path: str) -> dict[str, Any]:
        return {
            "url": f"https://127.0.0.1:{self.port}{path}",
            "caBundle": base64.b64encode(self.certs.ca_cert.read_bytes()).decode(),
        }

    def start(self, config_text: str) -> None:
        self.config.write_text(config_text)
        log = (self.work / "webhook.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webhook.cli",
                "serve",
                "--ops-listen",
                "127.0.0.1:0",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--cert-dir",
                str(self.certs.directory),
                "--config",
                str(self.config),
                "--kubeconfig",
                str(self.kubeconfig),
                "--client-ca",  # only the API server (and our probe) may call it
                str(self.cluster.plane.ca_file),
                *self.background,
                "--shutdown-delay=0",  # no Service routes here: nothing to drain
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        context = self.client_context()

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"webhook exited: {self.log()}")
            with urllib.request.urlopen(
                f"https://127.0.0.1:{self.port}/readyz", context=context, timeout=2
            ) as response:
                return bool(response.status == 200)

        wait_for(ready, timeout=60, what=f"webhook /readyz (log: {self.work / 'webhook.log'})")

    def resume(self) -> None:
        """Start again with the configuration it last ran with."""
        self.start(self.config.read_text())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None

    def log(self) -> str:
        path = self.work / "webhook.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


class InClusterWebhook:
    """Our Deployment from deploy/, as shipped, in a cluster named by a kubeconfig (the image
    `stateful-guard:dev` is loaded by deploy/kind/e2e.sh). Stopping it scales it to zero."""

    def __init__(self, cluster: Cluster, work: Path) -> None:
        self.cluster = cluster
        self.certs = cert_files.issue(work / "certs", service="stateful-guard", namespace=NAMESPACE)

    def client_config(self, path: str) -> dict[str, Any]:
        return {
            "service": {
                "name": "stateful-guard",
                "namespace": NAMESPACE,
                "path": path,
                "port": 443,
            },
            "caBundle": base64.b64encode(self.certs.ca_cert.read_bytes()).decode(),
        }

    def _scale(self, replicas: int) -> None:
        self.cluster.apps.patch_namespaced_deployment_scale(
            "stateful-guard", NAMESPACE, {"spec": {"replicas": replicas}}
        )

    def start(self, config_text: str) -> None:
        del config_text  # the ConfigMap from deploy/ is mounted
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "stateful-guard-tls", "namespace": NAMESPACE},
            "stringData": {
                "tls.crt": self.certs.cert.read_text(),
                "tls.key": self.certs.key.read_text(),
                "ca.crt": self.certs.ca_cert.read_text(),
            },
        }
        self.cluster.apply(secret)
        self._scale(2)
        wait_for(
            lambda: (
                (
                    self.cluster.apps.read_namespaced_deployment(
                        "stateful-guard", NAMESPACE
                    ).status.ready_replicas
                    or 0
                )
                >= 2
            ),
            timeout=180,
            what="the stateful-guard Deployment",
        )

    def stop(self) -> None:
        self._scale(0)
        wait_for(
            lambda: (
                not self.cluster.core.list_namespaced_pod(
                    NAMESPACE, label_selector="app.kubernetes.io/component=webhook"
                ).items
            ),
            timeout=120,
            what="webhook pods gone",
        )

    def resume(self) -> None:
        self.start("")


Webhook = LocalWebhook | InClusterWebhook


@dataclass
class Install:
    """One overlay of deploy/ applied as shipped; only clientConfig points at the webhook."""

    cluster: Cluster
    webhook: Webhook
    overlay: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    def __enter__(self) -> Install:
        self.objects = render(self.overlay)
        config = next(o for o in self.objects if o["kind"] == "ConfigMap")
        for obj in self.objects:
            if obj["kind"] not in WEBHOOK_KINDS:
                self.cluster.apply(obj)
        self.webhook.start(config["data"]["config.yaml"])
        for obj in self.webhook_configurations():
            self.cluster.apply(obj)
        self.wait_until_called()
        self.wait_fail_closed()
        return self

    def failure_policies(self) -> dict[str, str]:
        config = k8s.AdmissionregistrationV1Api(
            self.cluster.api
        ).read_validating_webhook_configuration("stateful-guard")
        return {hook.name: hook.failure_policy for hook in config.webhooks}

    def wait_fail_closed(self) -> None:
        """Shipped `Ignore`, the data webhooks turn `Fail` once the webhook has been called
        (it patches them itself): what every test after the install sees."""
        data = ("pods.stateful-guard.io", "data.stateful-guard.io", "evictions.stateful-guard.io")
        wait_for(
            lambda: all(self.failure_policies()[name] == "Fail" for name in data),
            timeout=30,
            what="the webhook to make its data webhooks fail closed",
        )

    def webhook_configurations(self) -> Iterator[dict[str, Any]]:
        for obj in self.objects:
            if obj["kind"] in WEBHOOK_KINDS:
                obj = copy.deepcopy(obj)
                for hook in obj["webhooks"]:
                    hook["clientConfig"] = self.webhook.client_config(
                        hook["clientConfig"]["service"]["path"]
                    )
                yield obj

    def wait_until_called(self) -> None:
        """The API server picks up webhook configurations asynchronously: probe with a dry-run
        create that only our mutation changes (an empty serviceName)."""
        probe_ns = self.cluster.namespace(mode="enforce")
        body = statefulset("probe", service_name="")
        try:
            wait_for(
                lambda: (
                    self.cluster.apps.create_namespaced_stateful_set(
                        probe_ns, body, dry_run="All"
                    ).spec.service_name
                    == "probe"
                ),
                timeout=30,
                what="the API server to call the webhook",
            )
        finally:
            self.cluster.core.delete_namespace(probe_ns)

    def __exit__(self, *_: object) -> None:
        for obj in self.objects:
            if obj["kind"] in WEBHOOK_KINDS:
                self.cluster.delete(obj)
        self.webhook.stop()
