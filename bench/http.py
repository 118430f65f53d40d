"""Throughput and latency over keep-alive TLS: our server against the bare baseline, the same
bodies, concurrency 1, 8 and 64; servers pinned to core 0, the load generator to core 1.

The load generator is wrk (C, from the distribution's packages) when it is installed: a
Python client saturates its own core at about the rate the bare baseline answers, so with it
the baseline is measured too low and every ratio is flattered (the table says which one ran).
The two servers take turns, a few short rounds each, and each figure is the median of its
rounds: this machine's speed drifts by tens of percent within a minute, and turns put both
servers through the same drift."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from bench import baseline
from bench.bodies import create_body, delete_body
from bench.inprocess import percentile
from certs import files
from tests.support import EXAMPLES, ROOT

SERVER_CORE, LOAD_CORE = 0, 1


def serve_command(port: int, cert_dir: Path, *extra: str) -> list[str]:
    """Our server as the benchmarks run it: the tour's cluster view, and the shipped log level
    (every policy decision is a log line on the request path; callers send it to /dev/null)."""
    return [
        sys.executable,
        "-m",
        "webhook.cli",
        "serve",
        "--ops-listen",
        "127.0.0.1:0",
        "--listen",
        f"127.0.0.1:{port}",
        "--cert-dir",
        str(cert_dir),
        "--objects",
        str(EXAMPLES / "cluster.yaml"),
        *extra,
    ]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


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


WRK_SCRIPT = """
wrk.method = "POST"
local f = io.open(os.getenv("BENCH_BODY"), "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, '
    .. '"errors": %d}\\n', summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_load(
    url: str, body_file: Path, script: Path, *, concurrency: int, seconds: int
) -> dict[str, float]:
    """One wrk run: keep-alive TLS POSTs from `concurrency` connections for `seconds` (on
    the load generator's core: it inherits this process's pinning)."""
    done = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url],
        env={**os.environ, "BENCH_BODY": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "rps": result["requests"] / result["seconds"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "errors": result["errors"],
    }


def one_run(
    url: str,
    *,
    body_file: Path,
    script: Path,
    ca: Path,
    wrk: bool,
    concurrency: int,
    seconds: float,
) -> dict[str, float]:
    if wrk:
        return wrk_load(url, body_file, script, concurrency=concurrency, seconds=seconds)
    return asyncio.run(
        load(url, body_file.read_bytes(), ca, concurrency=concurrency, seconds=seconds)
    )


def run(
    work: Path,
    *,
    seconds: int = 2,
    rounds: int = 3,
    concurrencies: tuple[int, ...] = (1, 8, 64),
) -> dict[str, dict[str, dict[str, float]]]:
    """Each (body, concurrency): ours and the baseline in turn, `rounds` times `seconds`
    each after a warm-up; per server the median of its rounds."""
    certs = files.issue(work / "certs", service="stateful-guard", namespace="bench")
    wrk = shutil.which("wrk") is not None
    pinned = pin(0, LOAD_CORE)
    script = work / "load.lua"
    script.write_text(WRK_SCRIPT)
    ours_port, base_port = free_port(), free_port()
    servers = {
        "ours": (serve_command(ours_port, certs.directory), ours_port),
        "baseline": (baseline.command(base_port, certs.cert, certs.key), base_port),
    }
    bodies = {
        "statefulset-create /mutate": ("/mutate", create_body()),
        "pod-delete /validate": ("/validate", delete_body()),
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    with running(*servers["ours"], certs.ca_cert), running(*servers["baseline"], certs.ca_cert):
        for name, (path, body) in bodies.items():
            body_file = work / f"{path.strip('/')}.json"
            body_file.write_bytes(body)
            for concurrency in concurrencies:
                urls = {
                    server: f"https://127.0.0.1:{port}{path}"
                    for server, (_, port) in servers.items()
                }
                how = {"body_file": body_file, "script": script, "ca": certs.ca_cert, "wrk": wrk}
                for url in urls.values():  # warm-up: connections, caches, the allocator
                    one_run(url, concurrency=concurrency, seconds=1, **how)
                samples: dict[str, list[dict[str, float]]] = {server: [] for server in servers}
                for _ in range(rounds):
                    for server, url in urls.items():
                        samples[server].append(
                            one_run(url, concurrency=concurrency, seconds=seconds, **how)
                        )
                results[f"{name} c={concurrency}"] = {
                    server: {
                        key: statistics.median(s[key] for s in runs)
                        for key in ("rps", "p50_ms", "p99_ms")
                    }
                    | {"errors": sum(s["errors"] for s in runs)}
                    for server, runs in samples.items()
                }
    results["_setup"] = {
        "load generator": {"wrk": float(wrk)},
        "pinned": {"yes": float(pinned)},
    }
    return results


if __name__ == "__main__":
    import tempfile

    for key, value in run(Path(tempfile.mkdtemp())).items():
        print(key, value)
