"""`stateful-guard serve` as a user runs it: its own certificates, JSON logs, graceful SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import request_dict, review_body, statefulset_pod
from webhook.cli import DEFAULT_CERT_DIR, build_parser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook.cli",
            "serve",
            "--ops-listen",
            "127.0.0.1:0",
            "--listen",
            f"127.0.0.1:{port}",
            "--shutdown-delay",
            "0.5",
        ],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    ca = tmp_path / DEFAULT_CERT_DIR / "ca.crt"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if ca.exists():
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        process.kill()
        pytest.fail(f"server did not start: {process.communicate()[1]}")
    yield process, port, ca
    if process.poll() is None:
        process.kill()
        process.wait()


def tls(port: int, ca: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    return context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1"
    )  # the IP SAN, as the API server uses


def read_response(conn: ssl.SSLSocket) -> tuple[int, dict[str, object]]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += conn.recv(65536)
    return int(head.split()[1]), json.loads(body)


FORCE_DELETE = json.dumps(
    review_body(
        request_dict(
            "DELETE", old=statefulset_pod(), namespace="db", options={"gracePeriodSeconds": 0}
        )
    )
).encode()


def post_head(length: int) -> bytes:
    return (
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def test_defaults() -> None:
    args = build_parser().parse_args(["serve"])
    assert args.listen == ("127.0.0.1", 8443)
    assert args.cert_dir == DEFAULT_CERT_DIR
    assert args.config is None and args.objects is None


def test_serve_with_no_flags_makes_certificates_and_answers(
    serving: tuple[subprocess.Popen[str], int, Path],
) -> None:
    process, port, ca = serving
    body = FORCE_DELETE
    with tls(port, ca) as conn:
        conn.sendall(post_head(len(body)) + body)
        status, answer = read_response(conn)
    assert status == 200
    assert answer["response"]["allowed"] is False
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    lines = [json.loads(line) for line in process.stderr.read().splitlines()]
    messages = [line["msg"] for line in lines]
    assert any(m.startswith("no cluster view") for m in messages)
    assert "made a local CA and serving certificate" in messages
    assert any(
        line.get("decision") == "deny" and line.get("policy") == "force-delete" for line in lines
    )


def test_sigterm_lets_in_flight_requests_finish(
    serving: tuple[subprocess.Popen[str], int, Path],
) -> None:
    process, port, ca = serving
    body = FORCE_DELETE
    with tls(port, ca) as conn:
        conn.sendall(post_head(len(body)) + body[:100])
        time.sleep(0.3)  # the handler is now waiting for the rest of the body
        process.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # past the 0.5 s drain delay: the port is closed
        with pytest.raises(OSError):
            tls(port, ca).close()  # no new connections once shutting down
        conn.sendall(body[100:])
        status, answer = read_response(conn)
    assert status == 200
    assert answer["response"]["allowed"] is False
    assert process.wait(timeout=30) == 0
