"""What one caller can hold: connections, time to send a request, compressed bodies, and
what the server says about itself. Each test is an attack from issue 15, run on the port."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certs import files
from certs.reload import ReloadingContext
from tests.support import request_dict, review_body, statefulset_pod
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine
from webhook.serving.metrics import Metrics
from webhook.serving.server import (
    GuardedSite,
    Limits,
    ServerState,
    make_app,
    make_ops_app,
    make_runner,
)

LIMITS = Limits(max_connections=8, header_timeout=0.5, body_timeout=0.5, keepalive_timeout=0.5)


@dataclass
class Port:
    port: int
    client: ssl.SSLContext
    site: GuardedSite

    def connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return self.client.wrap_socket(raw, server_hostname="localhost")


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[Port]:
    certs = files.issue(tmp_path, service="s", namespace="n")
    tls = ReloadingContext(certs.cert, certs.key)
    state = ServerState(engine=Engine(MemoryView()), metrics=Metrics(), limits=LIMITS)
    runner = make_runner(make_app(state))
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, limits=LIMITS, ssl_context=tls.context)
    await site.start()
    client = ssl.create_default_context(cafile=str(certs.ca_cert))
    yield Port(site.port, client, site)
    await runner.cleanup()


def closed_within(tls: ssl.SSLSocket, seconds: float) -> float:
    """How long until the server closes the connection (fails past `seconds`)."""
    started = time.monotonic()
    tls.settimeout(seconds)
    try:
        while tls.recv(4096):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    return time.monotonic() - started


async def test_a_request_head_sent_slowly_is_cut_off(port: Port) -> None:
    """Slowloris: a header line every 0.2 s never completes; the connection is closed at
    the header timeout instead of being held for an hour."""

    def slowloris() -> float:
        with port.connect() as tls:
            tls.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            try:
                for i in range(50):
                    tls.sendall(f"X-Slow-{i}: y\r\n".encode())
                    time.sleep(0.2)
            except OSError:
                return time.monotonic() - started
            return closed_within(tls, 1)

    assert await asyncio.to_thread(slowloris) < 3


async def test_an_idle_connection_is_closed(port: Port) -> None:
    def idle() -> float:
        with port.connect() as tls:
            return closed_within(tls, 3)

    assert await asyncio.to_thread(idle) < 2


async def test_a_stalled_body_answers_408(port: Port) -> None:
    def stall() -> bytes:
        with port.connect() as tls:
            tls.sendall(
                b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            tls.settimeout(5)
            return tls.recv(200)

    answer = await asyncio.to_thread(stall)
    assert answer.startswith(b"HTTP/1.1 408"), answer


async def test_connections_past_the_cap_are_closed_before_any_handshake(port: Port) -> None:
    def flood() -> tuple[int, str]:
        held = [port.connect() for _ in range(LIMITS.max_connections)]
        try:
            try:
                extra = port.connect()  # the TLS handshake itself is refused
            except OSError as exc:
                return port.site.refused, type(exc).__name__
            extra.close()
            return port.site.refused, "connected"
        finally:
            for tls in held:
                tls.close()

    refused, outcome = await asyncio.to_thread(flood)
    assert refused == 1
    assert outcome != "connected"

    def after() -> bytes:  # closed connections are counted out: new ones are served again
        time.sleep(0.2)
        with port.connect() as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            tls.settimeout(5)
            return tls.recv(100)

    assert (await asyncio.to_thread(after)).startswith(b"HTTP/1.1 200")


async def test_compressed_bodies_are_refused(port: Port) -> None:
    """The API server never compresses; a gzip body (garbage or a bomb) gets a 415, never a
    500 and never a decompression."""
    body = review_body(
        request_dict(
            "DELETE", old=statefulset_pod(), namespace="db", options={"gracePeriodSeconds": 0}
        )
    )
    import json

    for payload in (gzip.compress(json.dumps(body).encode()), b"\x1f\x8bgarbage"):

        def send(data: bytes = payload) -> bytes:
            with port.connect() as tls:
                tls.sendall(
                    b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Encoding: gzip\r\nConnection: close\r\n"
                    + f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                tls.settimeout(5)
                return tls.recv(1000)

        answer = await asyncio.to_thread(send)
        assert answer.startswith(b"HTTP/1.1 415"), answer
        assert b"Content-Encoding" in answer


async def test_the_server_header_names_no_versions(port: Port) -> None:
    def get() -> bytes:
        with port.connect() as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            tls.settimeout(5)
            return tls.recv(1000)

    head = (await asyncio.to_thread(get)).split(b"\r\n\r\n")[0].lower()
    assert b"server: stateful-guard" in head
    assert b"python" not in head and b"aiohttp" not in head


async def test_a_client_that_goes_away_mid_body_logs_no_traceback(
    port: Port, caplog: pytest.LogCaptureFixture
) -> None:
    def abandon() -> None:
        for _ in range(20):
            with port.connect() as tls:
                tls.sendall(
                    b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 100000\r\n\r\n{"a": 1'
                )

    with caplog.at_level(logging.DEBUG):
        await asyncio.to_thread(abandon)
        await asyncio.sleep(0.3)
    tracebacks = [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
    assert tracebacks == []


async def test_the_plain_ops_port_serves_probes_and_metrics_within_the_cap() -> None:
    """The ops port is plain HTTP through the same capped site (no TLS layer)."""
    state = ServerState(engine=Engine(MemoryView()), metrics=Metrics(), limits=LIMITS)
    runner = make_runner(make_ops_app(state))
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, limits=LIMITS)
    await site.start()

    def get(path: str) -> bytes:
        with socket.create_connection(("127.0.0.1", site.port), timeout=5) as raw:
            raw.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while chunk := raw.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    def flood() -> int:
        held = [
            socket.create_connection(("127.0.0.1", site.port))
            for _ in range(LIMITS.max_connections)
        ]
        try:
            time.sleep(0.1)
            extra = socket.create_connection(("127.0.0.1", site.port), timeout=2)
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                return len(extra.recv(100))
            except OSError:
                return 0
            finally:
                extra.close()
        finally:
            for conn in held:
                conn.close()

    try:
        assert (await asyncio.to_thread(get, "/healthz")).startswith(b"HTTP/1.1 200")
        metrics = await asyncio.to_thread(get, "/metrics")
        assert metrics.startswith(b"HTTP/1.1 200") and b"stateful_guard_" in metrics
        assert await asyncio.to_thread(flood) == 0
        assert site.refused == 1
        await asyncio.sleep(0.2)
        assert (await asyncio.to_thread(get, "/readyz")).startswith(b"HTTP/1.1 200")
    finally:
        await runner.cleanup()
