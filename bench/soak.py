"""A bounded soak: load our server for `--minutes` (default 10) on 127.0.0.1 and show that its
memory and file descriptors stop growing after warm-up.

    .venv/bin/python -m bench.soak [--minutes 10] [--concurrency 8] [--attack]

Samples the server's RSS (/proc/<pid>/status) and open descriptors (/proc/<pid>/fd) every 10 s,
between bursts of load when every client connection is closed (a descriptor still open then
is a leak);
after the first minute of warm-up, RSS may grow by less than 5 % and descriptors not at all.
Exit 0 when both hold, 1 otherwise. Bodies alternate between the StatefulSet CREATE and the
pod DELETE; connections are kept alive and, every few seconds, dropped and opened anew.
With `--attack`, each burst also carries the attacks of `bench/attacks.py` at a tenth of
their size (slowloris and idle connections held through the burst, stalled gzip bodies, a
2,000-container set): the load must still be answered, and memory still stop growing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import attacks
from bench.bodies import create_body, delete_body
from bench.http import LOAD_CORE, free_port, pin, rss_kib, running, serve_command
from certs import files


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def attack(port: int, context: ssl.SSLContext, seconds: float) -> None:
    """bench/attacks.py's phases at a tenth of their size, all at once, for `seconds`."""
    await asyncio.gather(
        attacks.slowloris(70, seconds)(port, context),
        attacks.idle(50, seconds)(port, context),
        attacks.stalled_gzip(3)(port, context),
        attacks.huge_objects(2000, parallel=1)(port, context),
    )


async def drive(
    port: int, ca: Path, *, seconds: float, concurrency: int, attacked: bool = False
) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    attacking = asyncio.ensure_future(attack(port, context, seconds)) if attacked else None
    bodies = [("/mutate", create_body()), ("/validate", delete_body())]
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # a new session (new connections) every 5 s
        connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
        async with aiohttp.ClientSession(connector=connector) as session:
            until = min(deadline, time.monotonic() + 5)

            async def worker(n: int, until: float) -> int:
                count = 0
                while time.monotonic() < until:
                    path, body = bodies[(n + count) % 2]
                    async with session.post(
                        f"https://127.0.0.1:{port}{path}",
                        data=body,
                        headers={"Content-Type": "application/json"},
                    ) as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"HTTP {r.status}")
                    count += 1
                return count

            sent += sum(await asyncio.gather(*(worker(n, until) for n in range(concurrency))))
    if attacking is not None:
        await attacking
    return sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--attack", action="store_true", help="attack while loading")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sg-soak-"))
    certs = files.issue(work, service="stateful-guard", namespace="soak")
    port = free_port()
    command = serve_command(port, certs.directory, "--shutdown-delay", "0")
    pin(0, LOAD_CORE)
    samples: list[tuple[float, int, int]] = []
    total = 0
    with running(command, port, certs.ca_cert) as server:
        started = time.monotonic()
        end = started + args.minutes * 60
        while time.monotonic() < end:
            total += asyncio.run(
                drive(
                    port,
                    certs.ca_cert,
                    seconds=min(10, end - time.monotonic()),
                    concurrency=args.concurrency,
                    attacked=args.attack,
                )
            )
            time.sleep(1)  # let the server see the clients' connections close
            sample = (time.monotonic() - started, rss_kib(server.pid), descriptors(server.pid))
            samples.append(sample)
            print(
                f"{sample[0]:6.0f} s  RSS {sample[1] / 1024:7.1f} MiB  fds {sample[2]:4d}  "
                f"requests {total}",
                flush=True,
            )
    warm = [s for s in samples if s[0] >= 60] or samples[-1:]
    first, last = warm[0], warm[-1]
    growth = (last[1] - first[1]) / first[1] * 100
    fds_grew = max(s[2] for s in warm) > first[2]
    print(
        f"\nafter warm-up ({first[0]:.0f} s to {last[0]:.0f} s, {total} requests): RSS "
        f"{first[1] / 1024:.1f} -> {last[1] / 1024:.1f} MiB ({growth:+.2f} %, limit 5 %), "
        f"descriptors {first[2]} -> max {max(s[2] for s in warm)} (must not grow)"
    )
    return 0 if growth < 5 and not fds_grew else 1


if __name__ == "__main__":
    sys.exit(main())
