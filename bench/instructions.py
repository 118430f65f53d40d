"""CPU instructions per request, ours and the baseline, counted by valgrind's callgrind.

Wall-clock ratios on this machine drift by tens of percent within a minute; an instruction
count does not (the same binary, input and environment give the same count, whatever else
the machine is doing). Each server runs twice under callgrind, answering a few requests
and then many more keep-alive requests sent one at a time; the difference of the two totals
is the cost of the extra requests alone (start-up, imports and shutdown cancel out). It
leaves out what the CPU waits on (cache misses, the kernel's share of TLS sockets), so it
complements the HTTP ratios rather than replacing them.
"""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path

from bench import baseline
from bench.bodies import create_body, delete_body
from bench.http import free_port, serve_command
from certs import files
from tests.support import ROOT

FEW = 20  # answered in both runs: the first calls' one-off costs cancel out


def available() -> bool:
    return shutil.which("valgrind") is not None


def count(command: list[str], path: str, body: bytes, *, ca: Path, port: int, requests: int) -> int:
    """Instructions the server spends in all, from start to exit, answering `requests`."""
    out = Path(ca).parent / f"callgrind.{port}.out"
    process = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            *command,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        connection = _connect(port, ca, process)
        headers = {"Content-Type": "application/json"}

        def send(times: int) -> None:
            for _ in range(times):
                connection.request("POST", path, body=body, headers=headers)
                answer = connection.getresponse()
                answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"{path} answered {answer.status}")

        send(requests)
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=300)
    found = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
    if not found:
        raise RuntimeError(f"no summary in {out}")
    return int(found.group(1))


def _connect(port: int, ca: Path, process: subprocess.Popen[bytes]) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 600  # imports under valgrind are slow
    while True:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=120)
        try:
            connection.connect()
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("server under valgrind did not start") from None
            time.sleep(0.5)
        else:
            return connection


def run(work: Path, requests: int = 400) -> dict[str, dict[str, float]]:
    """Per body: instructions per request for ours and the baseline, and their ratio."""
    certs = files.issue(work / "certs", service="stateful-guard", namespace="bench")
    results: dict[str, dict[str, float]] = {}
    for name, path, body in (
        ("statefulset-create /mutate", "/mutate", create_body()),
        ("pod-delete /validate", "/validate", delete_body()),
    ):
        per_request = {}
        for server in ("ours", "baseline"):
            port = free_port()
            command = (
                serve_command(port, certs.directory)
                if server == "ours"
                else baseline.command(port, certs.cert, certs.key)
            )
            counts = [
                count(command, path, body, ca=certs.ca_cert, port=port, requests=n)
                for n in (FEW, FEW + requests)
            ]
            per_request[server] = (counts[1] - counts[0]) / requests
        results[name] = {
            **per_request,
            "baseline_over_ours": per_request["baseline"] / per_request["ours"],
        }
    return results


if __name__ == "__main__":
    import tempfile

    for key, value in run(Path(tempfile.mkdtemp())).items():
        print(key, value)
