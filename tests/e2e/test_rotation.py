"""Rotating the webhook's CA through the real API server, as README "Operating safely" says:
old and new CA in caBundle, switch the serving certificate, drop the old CA; requests keep
working throughout. A control shows the bundle matters: without the new CA, calls fail."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

from kubernetes.client import ApiException

from certs import files
from tests.e2e.cluster import Cluster, Install, LocalWebhook, message, statefulset, wait_for
from tests.e2e.test_namespaced import scheduled_set_pod


def set_bundle(cluster: Cluster, install: Install, *cas: Path) -> None:
    bundle = base64.b64encode(b"".join(ca.read_bytes() for ca in cas)).decode()
    for obj in install.webhook_configurations():
        for hook in obj["webhooks"]:
            hook["clientConfig"]["caBundle"] = bundle
        cluster.apply(obj)


def serve_certificate_of(webhook: LocalWebhook, directory: Path) -> None:
    """Replace the webhook's serving pair with one signed by the CA in `directory`."""
    issued = files.issue(directory, service="stateful-guard", namespace="stateful-guard")
    files.write_pair(
        webhook.certs.cert,
        webhook.certs.key,
        files.KeyPair.from_pem(issued.cert.read_bytes(), issued.key.read_bytes()),
    )


def serves_certificate_of(port: int, ca: Path) -> bool:
    """Whether a TLS client trusting only `ca` can connect to the webhook."""
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            return True
    except ssl.SSLError:
        return False


def mutated(cluster: Cluster, namespace: str) -> bool:
    answer: Any = cluster.apps.create_namespaced_stateful_set(
        namespace, statefulset("probe"), dry_run="All"
    )
    return bool(answer.spec.service_name == "probe")


def test_two_ca_bundle_rotation(cluster: Cluster, namespaced: Install, tmp_path: Path) -> None:
    webhook = namespaced.webhook
    assert isinstance(webhook, LocalWebhook)
    old_ca = webhook.certs.ca_cert
    new_dir = tmp_path / "new-ca"
    files.load_or_make_ca(files.CertFiles(new_dir))
    new_ca = new_dir / files.CA_CERT
    ns = cluster.namespace(mode="enforce")
    failures: list[str] = []
    calls = 0
    stop = threading.Event()

    def keep_calling() -> None:
        nonlocal calls
        while not stop.is_set():
            try:
                if not mutated(cluster, ns):
                    failures.append("not mutated")
                calls += 1
            except ApiException as exc:
                failures.append(message(exc))

    try:
        set_bundle(cluster, namespaced, old_ca, new_ca)  # 1. trust both
        wait_for(lambda: mutated(cluster, ns), what="calls with the two-CA bundle")
        caller = threading.Thread(target=keep_calling)
        caller.start()
        serve_certificate_of(webhook, new_dir)  # 2. switch the serving certificate
        wait_for(
            lambda: serves_certificate_of(webhook.port, new_ca),
            timeout=30,
            what="the webhook serving the new certificate",
        )
        before = calls
        wait_for(lambda: calls >= before + 20, timeout=60, what="calls after the switch")
        set_bundle(cluster, namespaced, new_ca)  # 3. drop the old CA
        before = calls
        wait_for(lambda: calls >= before + 20, timeout=60, what="calls after the old CA went")
        stop.set()
        caller.join(timeout=30)
        assert failures == []

        # Control: a bundle without the serving CA fails the Fail-policy webhook. (It must be a
        # bundle the API server has not used: client-go caches a transport per CA bundle, and
        # an idle keep-alive connection made under an earlier certificate stays trusted.)
        other = tmp_path / "unrelated-ca"
        files.load_or_make_ca(files.CertFiles(other))
        set_bundle(cluster, namespaced, other / files.CA_CERT)
        pod = scheduled_set_pod(cluster, ns, "ctl")

        def refused_for_trust() -> str | None:
            try:
                cluster.core.delete_namespaced_pod(pod, ns, grace_period_seconds=0, dry_run="All")
            except ApiException as exc:
                return message(exc) if "x509" in message(exc) else None
            return None

        text = wait_for(refused_for_trust, timeout=30, what="an untrusted-certificate failure")
        assert 'failed calling webhook "pods.stateful-guard.io"' in text
    finally:
        stop.set()
        # Back to the original CA for the tests that follow.
        files.issue(webhook.certs.directory, service="stateful-guard", namespace="stateful-guard")
        set_bundle(cluster, namespaced, old_ca)
        wait_for(lambda: mutated(cluster, ns), timeout=60, what="the original CA serving again")
