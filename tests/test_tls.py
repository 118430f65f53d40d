"""The real TLS listener: versions and ciphers, and certificate rotation without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509

from certs import files
from certs.reload import ReloadingContext
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine
from webhook.serving.metrics import Metrics
from webhook.serving.server import ServerState, make_app


@dataclass
class Running:
    port: int
    certs: files.CertFiles
    tls: ReloadingContext


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    certs = files.issue(tmp_path, service="stateful-guard", namespace="sg")
    tls = ReloadingContext(certs.cert, certs.key)
    state = ServerState(
        engine=Engine(MemoryView()), metrics=Metrics(), jobs=[lambda: tls.watch(0.05)]
    )
    runner = web.AppRunner(make_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context)
    await site.start()
    port = runner.addresses[0][1]
    yield Running(port, certs, tls)
    await runner.cleanup()


def client_context(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    return context


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    return head + await reader.readexactly(length)


def _serial(writer: asyncio.StreamWriter) -> int:
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


async def test_tls12_and_tls13_accepted(server: Running) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = client_context(server.certs.ca_cert)
        context.minimum_version = context.maximum_version = version
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=context, server_hostname="localhost"
        )
        assert writer.get_extra_info("ssl_object").version() == version.name.replace("_", ".")
        assert b"200 OK" in await _get(reader, writer)
        writer.close()


def _handshake(port: int, context: ssl.SSLContext) -> str:
    """A blocking handshake, which (unlike asyncio) reports the server's alert."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


def _permissive_server(certs: files.CertFiles) -> tuple[int, threading.Thread]:
    """A control server with the same certificate that accepts old protocols and ciphers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.load_cert_chain(certs.cert, certs.key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve_one() -> None:
        with listener:
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
                pass

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


@pytest.mark.parametrize(
    ("version", "ciphers"),
    [
        pytest.param(ssl.TLSVersion.TLSv1, "ALL:@SECLEVEL=0", id="tls1.0"),
        pytest.param(ssl.TLSVersion.TLSv1_1, "ALL:@SECLEVEL=0", id="tls1.1"),
        pytest.param(
            ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0", id="tls1.2-cbc-sha1"
        ),
        pytest.param(
            ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0", id="tls1.2-cbc-sha384"
        ),
    ],
)
async def test_old_protocols_and_weak_ciphers_refused(
    server: Running, version: ssl.TLSVersion, ciphers: str
) -> None:
    context = client_context(server.certs.ca_cert)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # we mean to offer the old ones
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = version
    context.set_ciphers(ciphers)
    # Control: this client really can complete such a handshake with a server that allows it.
    port, thread = _permissive_server(server.certs)
    assert await asyncio.to_thread(_handshake, port, context) == version.name.replace("_", ".")
    thread.join(5)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.to_thread(_handshake, server.port, context)


async def test_replaced_certificate_served_to_new_connections(server: Running) -> None:
    context = client_context(server.certs.ca_cert)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=context, server_hostname="localhost"
    )
    old_serial = _serial(writer)
    assert b"200 OK" in await _get(reader, writer)

    files.issue(server.certs.directory, service="stateful-guard", namespace="sg")
    new_serial = x509.load_pem_x509_certificate(server.certs.cert.read_bytes()).serial_number
    assert new_serial != old_serial
    for _ in range(100):
        if server.tls.reloads:
            break
        await asyncio.sleep(0.05)
    assert server.tls.reloads == 1

    r2, w2 = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=context, server_hostname="localhost"
    )
    assert _serial(w2) == new_serial
    assert b"200 OK" in await _get(r2, w2)
    # The connection opened before the rotation keeps working.
    assert b"200 OK" in await _get(reader, writer)
    assert _serial(writer) == old_serial
    writer.close()
    w2.close()


async def test_half_written_pair_is_ignored(server: Running) -> None:
    server.certs.key.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
    assert server.tls.reload_if_changed() is False
    context = client_context(server.certs.ca_cert)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=context, server_hostname="localhost"
    )
    assert b"200 OK" in await _get(reader, writer), "handshakes keep using the last good pair"
    writer.close()


async def test_client_certificates_required_when_configured(tmp_path: Path) -> None:
    from certs.authority import make_client_cert

    certs = files.issue(tmp_path, service="s", namespace="n")
    ca = files.load_or_make_ca(certs)
    tls = ReloadingContext(certs.cert, certs.key, client_ca=certs.ca_cert)
    runner = web.AppRunner(make_app(ServerState(engine=Engine(MemoryView()), metrics=Metrics())))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        anonymous = client_context(certs.ca_cert)
        with pytest.raises((ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError)):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=anonymous, server_hostname="localhost"
            )
            await _get(reader, writer)  # TLS 1.3 reports a missing client cert after the handshake
        client = make_client_cert(ca, user="kube-apiserver")
        (tmp_path / "client.crt").write_bytes(client.cert_pem)
        (tmp_path / "client.key").write_bytes(client.key_pem)
        trusted = client_context(certs.ca_cert)
        trusted.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=trusted, server_hostname="localhost"
        )
        assert b"200 OK" in await _get(reader, writer)
        writer.close()
    finally:
        await runner.cleanup()
