"""Reliability under load: certificate rotation with zero failed handshakes, SIGTERM with
zero failed requests, and logs that carry no objects or secrets at the default level."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

from aiohttp import web
from cryptography import x509

from certs import files
from certs.reload import ReloadingContext
from tests.support import ROOT, request_dict, review_body, statefulset_pod
from tests.test_cli import free_port
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine
from webhook.serving.metrics import Metrics
from webhook.serving.server import ServerState, make_app


def handshake(port: int, context: ssl.SSLContext) -> int:
    """One new connection: handshake, a request, the serving certificate's serial."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1 200")
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return int(x509.load_der_x509_certificate(der).serial_number)


async def test_certificate_rotation_under_load_fails_no_handshake(tmp_path: Path) -> None:
    certs = files.issue(tmp_path, service="s", namespace="n")
    tls = ReloadingContext(certs.cert, certs.key)
    state = ServerState(
        engine=Engine(MemoryView()), metrics=Metrics(), jobs=[lambda: tls.watch(0.02)]
    )
    runner = web.AppRunner(make_app(state))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context).start()
    port = runner.addresses[0][1]
    client = ssl.create_default_context(cafile=str(certs.ca_cert))
    stop = threading.Event()
    serials: list[int] = []
    failures: list[BaseException] = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                serials.append(handshake(port, client))
            except BaseException as exc:  # every failure counts
                failures.append(exc)

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(10):  # ten rotations, as a cert-manager renewal or a Secret update does
            await asyncio.sleep(0.15)
            await asyncio.to_thread(files.issue, tmp_path, service="s", namespace="n")
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        for worker in workers:
            await asyncio.to_thread(worker.join)
        await runner.cleanup()
    assert failures == []
    assert len(serials) > 100
    assert tls.reloads >= 5, "new certificates were served"
    assert len(set(serials)) >= 5


def test_sigterm_under_load_fails_no_request(tmp_path: Path) -> None:
    """Clients keep sending over keep-alive TLS while the server gets SIGTERM: every request
    that was sent is answered 200 (during the drain each answer closes its connection and the
    client reconnects); once the port closes, connecting is refused: clean, nothing sent."""
    port = free_port()
    certs = files.issue(tmp_path / "certs", service="s", namespace="n")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook.cli",
            "serve",
            "--ops-listen",
            "127.0.0.1:0",
            "--listen",
            f"127.0.0.1:{port}",
            "--cert-dir",
            str(certs.directory),
            "--shutdown-delay",
            "1",
        ],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    body = json.dumps(
        review_body(
            request_dict(
                "DELETE", old=statefulset_pod(), namespace="db", options={"gracePeriodSeconds": 0}
            )
        )
    ).encode()
    deadline = time.monotonic() + 30
    while True:
        try:
            handshake(port, context)
            break
        except OSError:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

    stop = threading.Event()
    answered: list[int] = []
    failed: list[str] = []
    refused = threading.Event()

    def client() -> None:
        connection: http.client.HTTPSConnection | None = None
        while not stop.is_set():
            if connection is None:
                connection = http.client.HTTPSConnection(
                    "127.0.0.1", port, context=context, timeout=10
                )
                try:
                    connection.connect()
                except OSError:  # the port is closed: refused before anything was sent
                    refused.set()
                    connection = None
                    time.sleep(0.05)
                    continue
            try:
                connection.request(
                    "POST", "/validate", body=body, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                response.read()
                answered.append(response.status)
                if response.will_close:
                    connection.close()
                    connection = None
            except Exception as exc:  # a request sent and not answered: a failure
                failed.append(repr(exc))
                connection = None

    workers = [threading.Thread(target=client) for _ in range(6)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    before = len(answered)
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    time.sleep(0.3)
    stop.set()
    for worker in workers:
        worker.join(timeout=15)
    assert failed == []
    assert set(answered) == {200}
    assert len(answered) > before, "requests were answered during the drain"
    assert refused.is_set(), "after the drain, connecting is refused"


async def test_logs_carry_no_objects_or_secrets(aiohttp_client, caplog) -> None:  # type: ignore[no-untyped-def]
    """At the default level, decisions are logged by name and rule; an object's content (a
    literal password, a big annotation) never reaches the logs, not even when a policy
    raises on it."""
    import logging

    from tests.support import example
    from webhook.logs import JsonFormatter

    secret = "hunter2-do-not-log"
    statefulset = example("mysql-replicated.yaml", "StatefulSet")
    statefulset["metadata"]["annotations"] = {
        "stateful-guard.io/server-id": "mysql",
        "blob": "x" * 50_000,
        "stateful-guard.io/min-replicas": secret,
    }
    statefulset["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "MYSQL_ROOT_PASSWORD", "value": secret}
    ]
    broken = example("mysql-replicated.yaml", "StatefulSet")
    broken["metadata"]["annotations"] = {"stateful-guard.io/server-id": "mysql"}
    broken["spec"]["template"] = secret  # server-id raises on it
    client = await aiohttp_client(
        make_app(ServerState(engine=Engine(MemoryView()), metrics=Metrics()))
    )
    caplog.set_level(logging.INFO)
    for obj in (statefulset, broken):
        body = json.dumps(review_body(request_dict("CREATE", obj, namespace="db"))).encode()
        for path in ("/mutate", "/validate"):
            response = await client.post(
                path, data=body, headers={"Content-Type": "application/json"}
            )
            assert response.status == 200
    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert any('"policy":"stateful-practices"' in line for line in lines), "decisions logged"
    assert any("policy raised" in line for line in lines), "the exception path ran"
    for line in lines:
        assert secret not in line
        assert "x" * 100 not in line
        assert len(line) < 8000


def test_attacks_leave_memory_bounded_and_answer_no_5xx() -> None:
    """bench/attacks.py at a tenth of its size: slowloris, idle TLS connections, stalled gzip
    bodies and 2,000-container sets. Memory stays under the Deployment's limit, no answer is
    a 5xx, and the server answers afterwards (the full run sizes the limit: README)."""
    from bench import attacks

    assert attacks.main(["--scale", "0.1", "--limit-mib", "256", "--hold", "3"]) == 0
