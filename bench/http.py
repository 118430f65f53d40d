"""Throughput and latency over keep-alive TLS: our server against the bare baseline, the same
bodies, concurrency 1, 8 and 64; servers pinned to core 0, the load generator to core 1."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from bench.bodies import create_body, delete_body
from bench.inprocess import percentile
from certs import files
from tests.support import EXAMPLES, ROOT

SERVER_CORE, LOAD_CORE = 0, 1


def serve_command(port: int, cert_dir: Path, *extra: str) -> list[str]:
    """Our server as the benchmarks run it: the tour's cluster view, quiet logs."""
    return [
        sys.executable,
        "-m",
        "webhook.cli",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--cert-dir",
        str(cert_dir),
        "--objects",
        str(EXAMPLES / "cluster.yaml"),
        "--log-level",
        "warning",
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(pid: int, core: int) -> bool:
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return False
    os.sched_setaffinity(pid, {core})
    return True


@contextmanager
def running(command: list[str], port: int, ca: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pin(process.pid, SERVER_CORE)
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 30
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"server did not start: {command}") from None
            time.sleep(0.1)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


async def load(
    url: str, body: bytes, ca: Path, *, concurrency: int, seconds: float
) -> dict[str, float]:
    """Keep-alive TLS POSTs from `concurrency` workers for `seconds` (after a warm-up)."""
    context = ssl.create_default_context(cafile=str(ca))
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(until: float, record: bool) -> None:
            nonlocal errors
            while time.perf_counter() < until:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                if record:
                    latencies.append((time.perf_counter() - started) * 1000)

        warm = time.perf_counter() + min(1.0, seconds / 3)
        await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(worker(until, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "errors": errors,
    }


def run(
    work: Path, *, seconds: float = 4.0, concurrencies: tuple[int, ...] = (1, 8, 64)
) -> dict[str, dict[str, dict[str, float]]]:

    certs = files.issue(work / "certs", service="stateful-guard", namespace="bench")
    pinned = pin(0, LOAD_CORE)
    ours_port, base_port = free_port(), free_port()
    ours = serve_command(ours_port, certs.directory)
    base = [sys.executable, "-m", "bench.baseline", str(base_port), str(certs.cert), str(certs.key)]
    bodies = {
        "statefulset-create /mutate": ("/mutate", create_body()),
        "pod-delete /validate": ("/validate", delete_body()),
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    for server, command, port in (("ours", ours, ours_port), ("baseline", base, base_port)):
        with running(command, port, certs.ca_cert):
            for name, (path, body) in bodies.items():
                for concurrency in concurrencies:
                    key = f"{name} c={concurrency}"
                    results.setdefault(key, {})[server] = asyncio.run(
                        load(
                            f"https://127.0.0.1:{port}{path}",
                            body,
                            certs.ca_cert,
                            concurrency=concurrency,
                            seconds=seconds,
                        )
                    )
    results["_pinned"] = {"pinned": {"yes": float(pinned)}}
    return results


if __name__ == "__main__":
    import tempfile

    for key, value in run(Path(tempfile.mkdtemp()), seconds=3).items():
        print(key, value)
