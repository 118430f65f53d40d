"""The webhook verifies its caller: the API server presents the client certificate of its
AdmissionConfiguration (every other e2e test passes through that), anyone else is refused."""

from __future__ import annotations

import socket
import ssl

from certs.authority import make_ca, make_client_cert
from tests.e2e.cluster import Cluster, Install, LocalWebhook


def call(webhook: LocalWebhook, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return tls.recv(200)


def refused(webhook: LocalWebhook, context: ssl.SSLContext) -> bool:
    """No answer: the handshake failed, or (TLS 1.3 checks the client certificate after the
    handshake) the connection ended without one."""
    try:
        return not call(webhook, context).startswith(b"HTTP/1.1 200")
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


def test_only_callers_with_a_trusted_client_certificate(
    cluster: Cluster, namespaced: Install, tmp_path
) -> None:
    webhook = namespaced.webhook
    assert isinstance(webhook, LocalWebhook)
    assert call(webhook, webhook.client_context()).startswith(b"HTTP/1.1 200")
    assert refused(webhook, webhook.client_context(with_certificate=False))
    stranger = make_client_cert(make_ca("another-ca"), user="kube-apiserver")
    pem = tmp_path / "stranger.pem"
    pem.write_bytes(stranger.cert_pem + stranger.key_pem)
    context = webhook.client_context(with_certificate=False)
    context.load_cert_chain(pem)
    assert refused(webhook, context)
