"""The worst a caller can do to our memory, measured: how the Deployment's memory limit is
sized. On 127.0.0.1 only, bounded in time, and stops by itself.

    .venv/bin/python -m bench.attacks [--scale 1.0] [--limit-mib 256] [--hold 15]

Starts `serve` as the benchmarks do and, one phase at a time, attacks it as issue 15 did:
700 slowloris connections sending a header line every second, 1,000 idle TLS connections,
30 gzip bodies that stall, and four parallel 20,000-container StatefulSets with the server-id
preset (0.7 MB each) to /mutate and /validate; connections are held `--hold` seconds.
Samples the server's RSS every 0.1 s and prints each phase's peak. Exits 0 when every peak
is under `--limit-mib`, no answer was a 5xx and the server still answers afterwards, else
1. `--scale` shrinks the counts (the tests run it at 0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.http import free_port, rss_kib, running, serve_command
from certs import files
from tests.support import request_dict, review_body

Phase = Callable[[int, ssl.SSLContext], Awaitable[list[int]]]


async def _open(
    port: int, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )


async def _hold(
    count: int, port: int, context: ssl.SSLContext, seconds: float, trickle: bool
) -> list[int]:
    """`count` connections for `seconds`, idle or sending a header line every second."""

    async def one(i: int) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.TimeoutError):
            reader, writer = await asyncio.wait_for(_open(port, context), 10)
            deadline = time.monotonic() + seconds
            if trickle:
                writer.write(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
            while time.monotonic() < deadline and not reader.at_eof():
                if trickle:
                    writer.write(f"X-{i}-{int(time.monotonic())}: y\r\n".encode())
                    await writer.drain()
                await asyncio.sleep(1)
            writer.close()

    await asyncio.gather(*(one(i) for i in range(count)))
    return []


def slowloris(count: int, seconds: float) -> Phase:
    return lambda port, context: _hold(count, port, context, seconds, trickle=True)


def idle(count: int, seconds: float) -> Phase:
    return lambda port, context: _hold(count, port, context, seconds, trickle=False)


def stalled_gzip(count: int) -> Phase:
    async def run(port: int, context: ssl.SSLContext) -> list[int]:
        async def one() -> int:
            reader, writer = await _open(port, context)
            writer.write(
                b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Encoding: gzip\r\nContent-Length: 7000000\r\n\r\n\x1f\x8b" + b"\0" * 7000
            )
            await writer.drain()
            try:
                line = await asyncio.wait_for(reader.readline(), 15)
            finally:
                writer.close()
            return int(line.split()[1]) if line else 0

        return list(await asyncio.gather(*(one() for _ in range(count))))

    return run


def huge_set(containers: int) -> bytes:
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "wide",
            "namespace": "db",
            "annotations": {"stateful-guard.io/server-id": "mysql"},
        },
        "spec": {
            "replicas": 3,
            "serviceName": "wide",
            "selector": {"matchLabels": {"app": "wide"}},
            "template": {
                "metadata": {"labels": {"app": "wide"}},
                "spec": {
                    "containers": [
                        {
                            "name": f"c{i}",
                            "image": "busybox",
                            "env": [{"name": "PASSWORD", "value": "x"}],
                        }
                        for i in range(containers)
                    ]
                },
            },
        },
    }
    return json.dumps(review_body(request_dict("CREATE", stateful_set, namespace="db"))).encode()


def huge_objects(containers: int, parallel: int = 4) -> Phase:
    body = huge_set(containers)

    async def run(port: int, context: ssl.SSLContext) -> list[int]:
        async def one(path: str) -> int:
            reader, writer = await _open(port, context)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 60)
            with contextlib.suppress(Exception):
                await reader.read()
            writer.close()
            return int(line.split()[1])

        paths = ["/mutate", "/validate"] * parallel
        return list(await asyncio.gather(*(one(p) for p in paths)))

    return run


async def _measure(
    pid: int, port: int, context: ssl.SSLContext, phase: Phase
) -> tuple[int, list[int]]:
    peak = 0
    task = asyncio.ensure_future(phase(port, context))
    while not task.done():
        peak = max(peak, rss_kib(pid))
        await asyncio.sleep(0.1)
    return peak, task.result()


async def _healthy(port: int, context: ssl.SSLContext) -> bool:
    reader, writer = await _open(port, context)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return line.startswith(b"HTTP/1.1 200")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--limit-mib", type=float, default=256)
    parser.add_argument("--hold", type=float, default=15, help="seconds connections are held")
    args = parser.parse_args(argv)

    def n(count: int) -> int:
        return max(1, int(count * args.scale))

    phases: list[tuple[str, Phase]] = [
        (f"{n(700)} slowloris connections", slowloris(n(700), args.hold)),
        (f"{n(1000)} idle TLS connections", idle(n(1000), args.hold)),
        (f"{n(30)} stalled gzip bodies", stalled_gzip(n(30))),
        (f"4 x {n(20000)}-container sets, mutate+validate", huge_objects(n(20000))),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        certs = files.issue(Path(tmp), service="s", namespace="n")
        port = free_port()
        context = ssl.create_default_context(cafile=str(certs.ca_cert))
        with running(serve_command(port, certs.directory), port, certs.ca_cert) as server:
            start = rss_kib(server.pid)
            print(f"{'phase':48} {'peak RSS MiB':>12}  statuses")
            print(f"{'idle, after start-up':48} {start / 1024:12.0f}")
            failed = False
            for name, phase in phases:
                peak, statuses = asyncio.run(_measure(server.pid, port, context, phase))
                errors = [s for s in statuses if s >= 500]
                failed |= bool(errors) or peak / 1024 >= args.limit_mib
                shown = ",".join(sorted({str(s) for s in statuses})) or "-"
                print(f"{name:48} {peak / 1024:12.0f}  {shown}")
            healthy = asyncio.run(_healthy(port, context))
            print(f"{'answers afterwards':48} {'yes' if healthy else 'NO':>12}")
    return 1 if failed or not healthy else 0


if __name__ == "__main__":
    sys.exit(main())
