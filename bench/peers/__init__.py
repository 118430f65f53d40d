"""`python -m bench peers`: stateful-guard beside the engines a user would otherwise install,
through the same API server, the same three rules, in one run.

The rules (each engine's own form in `bench/peers/rules/`):
- (a) force-delete: refuse a force delete (grace period 0) of a scheduled StatefulSet pod;
- (b) claim-class: a StatefulSet claim template that names no class gets the namespace's;
- (c) missing-class: refuse a StatefulSet naming a StorageClass that does not exist (a lookup).

Each engine is installed in turn on the e2e control plane (etcd, kube-apiserver built from the
k8s.io/kubernetes module); for each rule and 1, 8 and 64 concurrent clients the same dry-run
requests go through the API server (`dryRun=All`: judged and patched, nothing stored), and we
record the latency the API server answers with (added over no engine), requests per second,
whether the engine did what the rule says, and the engine process's CPU seconds and peak RSS
per 1,000 requests (for CEL, which runs inside the API server, the API server's CPU over no
engine). Bounded: a few hundred requests per cell; `--quick` fewer.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import importlib.util
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from bench import save
from bench.inprocess import percentile
from certs import files as cert_files
from certs.authority import make_client_cert
from tests.e2e.cluster import Cluster, Install, LocalWebhook, statefulset, wait_for
from tests.e2e.controlplane import CACHE, ControlPlane, build, free_port

RULES = Path(__file__).parent / "rules"
# Where bench/peers/build.sh puts the Go engines it builds from their modules.
PEERS_BIN = CACHE / "peers" / "bin"
NAMESPACE = "peers-bench"
CLASS = "fast"
OPERATIONS = ("force-delete", "claim-class", "missing-class")
CONCURRENCY = (1, 8, 64)
# The API server with MutatingAdmissionPolicy (beta, off by default in 1.35).
APISERVER_ARGS = (
    "--feature-gates=MutatingAdmissionPolicy=true",
    "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Engine:
    """One engine: how it starts and stops, which rules it runs, its process (None: in the
    API server), and why it cannot run here (None: it can)."""

    name: str
    rules: tuple[str, ...] = OPERATIONS
    why_not: str | None = None
    pid: int | None = None
    notes: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self, cluster: Cluster, work: Path) -> None:
        del cluster, work

    def launch(self, command: list[str], env: dict[str, str], log: Path) -> None:
        """Run the engine's process (output in `log`); `stop` ends it."""
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )
        self.pid = self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


class NoEngine(Engine):
    def __init__(self) -> None:
        super().__init__("no engine", rules=())


class StatefulGuard(Engine):
    """The namespaced install from deploy/ as shipped, our webhook as its ServiceAccount, with
    rules/stateful-guard.yaml over the shipped config."""

    def __init__(self) -> None:
        super().__init__(
            "stateful-guard",
            rules=("force-delete", "claim-class"),
            notes={
                "missing-class": "warned, never refused (a chart may create its class "
                "just after its set); the lookup is the same"
            },
        )
        self.install: Install | None = None

    def start(self, cluster: Cluster, work: Path) -> None:
        overlay = yaml.safe_load((RULES / "stateful-guard.yaml").read_text())

        class Configured(LocalWebhook):
            def start(self, config_text: str) -> None:
                config = yaml.safe_load(config_text) or {}
                config["namespaces"] = {**(config.get("namespaces") or {}), **overlay["namespaces"]}
                super().start(yaml.safe_dump(config))

        # As shipped but for how often each replica checks its data webhooks are fail-closed
        # (the install waits for it); nothing else on the request path.
        webhook = Configured(cluster, work, background=("--reconcile-interval=1",))
        self.install = Install(cluster, webhook, "namespaced").__enter__()
        assert webhook.process is not None
        self.pid = webhook.process.pid

    def stop(self) -> None:
        if self.install is not None:
            self.install.__exit__(None, None, None)


class Cel(Engine):
    """The ValidatingAdmissionPolicy and MutatingAdmissionPolicy of rules/cel.yaml, evaluated
    inside the API server."""

    def __init__(self) -> None:
        super().__init__(
            "CEL admission policies",
            rules=("force-delete", "claim-class"),
            notes={"missing-class": "not expressible: CEL cannot look up StorageClasses"},
        )
        self.objects = [d for d in yaml.safe_load_all((RULES / "cel.yaml").read_text()) if d]

    def start(self, cluster: Cluster, work: Path) -> None:
        del work
        for obj in self.objects:
            try:
                cluster.apply(obj)
            except ResourceNotFoundError:  # this API server serves no MutatingAdmissionPolicy
                self.rules = tuple(r for r in self.rules if r != "claim-class")
                self.notes["claim-class"] = f"{obj['kind']} not served by this API server"

    def stop(self) -> None:
        pass  # uninstalled by `uninstall`, called with the cluster


class Kopf(Engine):
    """rules/kopf_webhook.py under `kopf run`, which registers its own webhook
    configurations."""

    def __init__(self) -> None:
        super().__init__(
            "kopf webhook",
            rules=("claim-class", "missing-class"),
            notes={
                "force-delete": "not expressible: kopf's handlers do not receive the "
                "request's DeleteOptions (grace period)"
            },
        )
        if importlib.util.find_spec("kopf") is None:
            self.why_not = "kopf is not installed: .venv/bin/pip install 'kopf==1.45.2'"

    def start(self, cluster: Cluster, work: Path) -> None:
        certs = cert_files.issue(work / "kopf-certs", service="kopf", namespace="peers")
        port = free_port()
        self.launch(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "--standalone",
                "--all-namespaces",
                "--liveness=",
                str(RULES / "kopf_webhook.py"),
            ],
            {
                "KUBECONFIG": str(cluster.kubeconfig),
                "PEERS_PORT": str(port),
                "PEERS_CERT": str(certs.cert),
                "PEERS_KEY": str(certs.key),
                "PEERS_CA": str(certs.ca_cert),
            },
            work / "kopf.log",
        )


GATEKEEPER = ("github.com/open-policy-agent/gatekeeper/v3", "v3.23.1")
KYVERNO = ("github.com/kyverno/kyverno", "v1.19.1")


def module_dir(module: tuple[str, str]) -> Path:
    """Where the Go module proxy put a module's files (its manifests and CRDs)."""
    cache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(cache) / f"{module[0]}@{module[1]}"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def served(cluster: Cluster, path: str) -> bool:
    """Whether the API server serves a collection (a CRD established, a kind made)."""
    answer = cluster.api.call_api("GET", f"{cluster.api.configuration.host}{path}")
    answer.read()
    return bool(answer.status == 200)


def apply_and_establish(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    """Apply, and wait for each CRD among them to be served."""
    for obj in objects:
        cluster.apply(obj)
    for crd in (o for o in objects if o["kind"] == "CustomResourceDefinition"):
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        version = next(v["name"] for v in crd["spec"]["versions"] if v.get("served", True))
        path = f"/apis/{group}/{version}/{plural}"
        wait_for(lambda p=path: served(cluster, p), what=plural)


class Gatekeeper(Engine):
    """OPA Gatekeeper's binary, built from its Go module (`bench/peers/build.sh`), run as its
    Deployment runs it but against the e2e API server: its CRDs from the module's manifest,
    our certificates (`--disable-cert-rotation`), its webhook configurations as shipped
    (failurePolicy and all) pointed at it, with DELETE added for (a)."""

    def __init__(self) -> None:
        super().__init__("OPA Gatekeeper")
        self.binary = PEERS_BIN / "gatekeeper"
        if not self.binary.exists():
            self.why_not = f"not built: bash bench/peers/build.sh ({GATEKEEPER[1]})"

    def start(self, cluster: Cluster, work: Path) -> None:
        self.cluster = cluster
        manifest = documents(module_dir(GATEKEEPER) / "deploy" / "gatekeeper.yaml")
        namespace = "gatekeeper-system"
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        apply_and_establish(
            cluster, [o for o in manifest if o["kind"] == "CustomResourceDefinition"]
        )
        # It reads its own Pod (POD_NAME) to own its status objects: a stand-in, never run.
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "gatekeeper-bench", "namespace": namespace},
                "spec": {"containers": [{"name": "manager", "image": "gatekeeper:bench"}]},
            }
        )
        certs = cert_files.issue(
            work / "certs", service="gatekeeper-webhook-service", namespace=namespace
        )
        port = free_port()
        self.launch(
            [
                str(self.binary),
                f"--kubeconfig={cluster.kubeconfig}",
                f"--port={port}",
                f"--cert-dir={certs.directory}",
                "--disable-cert-rotation",
                "--operation=webhook",
                "--operation=mutation-webhook",
                "--operation=mutation-controller",
                "--operation=generate",  # makes the constraint kinds from the templates
                f"--health-addr=127.0.0.1:{free_port()}",
                f"--metrics-addr=127.0.0.1:{free_port()}",
                f"--prometheus-port={free_port()}",
                "--log-level=WARNING",
            ],
            {"POD_NAMESPACE": namespace, "POD_NAME": "gatekeeper-bench"},
            work / "gatekeeper.log",
        )
        wait_for(
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1), what="Gatekeeper"
        )
        ca = base64.b64encode(certs.ca_cert.read_bytes()).decode()
        for config in (o for o in manifest if o["kind"].endswith("WebhookConfiguration")):
            for hook in config["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca}
                for rule in hook.get("rules") or []:
                    if "*" in rule.get("resources", []) and "DELETE" not in rule["operations"]:
                        rule["operations"].append("DELETE")  # (a) judges pod deletes
            cluster.apply(config)
        self.webhooks = [o for o in manifest if o["kind"].endswith("WebhookConfiguration")]
        rules = documents(RULES / "gatekeeper.yaml")
        templates = [r for r in rules if r["kind"] == "ConstraintTemplate"]
        for template in templates:
            cluster.apply(template)
        for template in templates:
            kind = template["spec"]["crd"]["spec"]["names"]["kind"]
            path = f"/apis/constraints.gatekeeper.sh/v1beta1/{kind.lower()}"
            wait_for(lambda p=path: served(cluster, p), timeout=60, what=f"kind {kind}")
        for rule in rules:
            if rule["kind"] != "ConstraintTemplate":
                cluster.apply(rule)

    def stop(self) -> None:
        for config in getattr(self, "webhooks", []):
            with suppress(Exception):
                self.cluster.delete(config)
        super().stop()


class Kyverno(Engine):
    """Kyverno's admission controller, built from its Go module (`bench/peers/build.sh`), run
    out of cluster against the e2e API server (`--serverIP`: it registers its webhooks with
    that address and makes its own certificates), its CRDs and ConfigMaps from the module's
    install manifest."""

    def __init__(self) -> None:
        super().__init__("Kyverno")
        self.binary = PEERS_BIN / "kyverno"
        if not self.binary.exists():
            self.why_not = f"not built: bash bench/peers/build.sh ({KYVERNO[1]})"

    def start(self, cluster: Cluster, work: Path) -> None:
        self.cluster = cluster
        manifest = documents(module_dir(KYVERNO) / "config" / "install-latest-testing.yaml")
        namespace = "kyverno"
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        apply_and_establish(
            cluster, [o for o in manifest if o["kind"] == "CustomResourceDefinition"]
        )
        for config in (o for o in manifest if o["kind"] == "ConfigMap"):
            config["metadata"]["namespace"] = namespace
            cluster.apply(config)
        port = free_port()
        self.launch(
            [
                str(self.binary),
                f"--kubeconfig={cluster.kubeconfig}",
                f"--serverIP=127.0.0.1:{port}",
                f"--webhookServerPort={port}",
                "--caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca",
                "--tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair",
                "--autoUpdateWebhooks=true",
                "--admissionReports=false",
                "--disableMetrics=true",
                "--generateValidatingAdmissionPolicy=false",
                "--loggingFormat=text",
                "--v=1",
            ],
            {
                "KYVERNO_NAMESPACE": namespace,
                "KYVERNO_POD_NAME": "kyverno-bench",
                "KYVERNO_SERVICEACCOUNT_NAME": "kyverno-admission-controller",
                "KYVERNO_ROLE_NAME": "kyverno:admission-controller",
                "KYVERNO_DEPLOYMENT": "kyverno-admission-controller",
                "KYVERNO_SVC": "kyverno-svc",
                "INIT_CONFIG": "kyverno",
                "METRICS_CONFIG": "kyverno-metrics",
            },
            work / "kyverno.log",
        )
        for policy in documents(RULES / "kyverno.yaml"):
            wait_for(lambda p=policy: cluster.apply(p), timeout=120, what="Kyverno's policy")

    def stop(self) -> None:
        super().stop()  # first, or it would register its webhooks again
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            resource = self.cluster.dynamic.resources.get(
                api_version="admissionregistration.k8s.io/v1", kind=kind
            )
            for item in resource.get().items:
                if item.metadata.name.startswith("kyverno-"):
                    resource.delete(name=item.metadata.name)


def engines() -> list[Engine]:
    return [NoEngine(), StatefulGuard(), Cel(), Kopf(), Kyverno(), Gatekeeper()]


class Load:
    """Requests to the API server as an admin client certificate, from one asyncio loop."""

    def __init__(self, plane: ControlPlane, work: Path) -> None:
        pair = make_client_cert(plane.ca, user="peers-bench", groups=["system:masters"], days=1)
        pem = work / "client.pem"
        pem.write_bytes(pair.cert_pem + pair.key_pem)
        self.context = ssl.create_default_context(cafile=str(plane.ca_file))
        self.context.load_cert_chain(pem)
        self.server = plane.server

    def request(self, operation: str, number: int) -> tuple[str, str, dict[str, Any]]:
        base = f"{self.server}/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets?dryRun=All"
        if operation == "force-delete":
            return (
                "DELETE",
                f"{self.server}/api/v1/namespaces/{NAMESPACE}/pods/web-0?dryRun=All",
                # (the body's DeleteOptions win over the query: dryRun goes here too)
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "dryRun": ["All"],
                },
            )
        body = statefulset(
            f"db-{number}", storage_class=None if operation == "claim-class" else "missing"
        )
        body["metadata"]["namespace"] = NAMESPACE
        return "POST", base, body

    async def run(self, operation: str, total: int, concurrency: int) -> dict[str, Any]:
        latencies: list[float] = []
        outcomes: dict[str, int] = {}
        queue = iter(range(total))
        connector = aiohttp.TCPConnector(ssl=self.context, limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                for number in queue:
                    method, url, body = self.request(operation, number)
                    started = time.perf_counter()
                    async with session.request(method, url, json=body) as answer:
                        data = await answer.json()
                    latencies.append((time.perf_counter() - started) * 1000)
                    seen = outcome(operation, answer.status, data)
                    outcomes[seen] = outcomes.get(seen, 0) + 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        return {
            "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99),
            "rps": total / elapsed,
            "outcomes": outcomes,
        }


def outcome(operation: str, status: int, data: dict[str, Any]) -> str:
    """What the API server answered, in the rule's terms."""
    if status == 403 or (status == 400 and "denied" in str(data.get("message", ""))):
        return "refused"
    if status >= 300:
        return f"error {status}"
    if operation == "claim-class":
        templates = (data.get("spec") or {}).get("volumeClaimTemplates") or [{}]
        return (
            "patched"
            if templates[0].get("spec", {}).get("storageClassName") == CLASS
            else "allowed"
        )
    return "allowed"


EXPECTED = {"force-delete": "refused", "claim-class": "patched", "missing-class": "refused"}


def prepare(cluster: Cluster) -> None:
    """The namespace (guarded by every engine), the class, a scheduled StatefulSet pod."""
    cluster.core.create_namespace(
        {
            "metadata": {
                "name": NAMESPACE,
                "labels": {
                    "stateful-guard.io/mode": "enforce",
                    "peers.stateful-guard.io/bench": "true",
                },
            }
        }
    )
    wait_for(lambda: cluster.core.read_namespaced_service_account("default", NAMESPACE))
    cluster.storage.create_storage_class(
        {"metadata": {"name": CLASS}, "provisioner": "example.com/peers", "reclaimPolicy": "Retain"}
    )
    cluster.apps.create_namespaced_stateful_set(NAMESPACE, statefulset("web", replicas=1))
    wait_for(lambda: cluster.core.read_namespaced_pod("web-0", NAMESPACE), what="pod web-0")
    cluster.core.create_namespaced_pod_binding(
        "web-0",
        NAMESPACE,
        {
            "metadata": {"name": "web-0"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "peers-node"},
        },
        _preload_content=False,
    )


def uninstall(cluster: Cluster, engine: Engine) -> None:
    if isinstance(engine, Cel):
        for obj in engine.objects:
            with suppress(ResourceNotFoundError):
                cluster.delete(obj)


def ready(load: Load, engine: Engine) -> None:
    """Until each of the engine's rules acts (the API server picks up configurations, and
    engines their caches, in their own time)."""
    for operation in engine.rules:
        seen: dict[str, int] = {}

        def acts(op: str = operation, seen: dict[str, int] = seen) -> bool:
            seen.update(asyncio.run(load.run(op, 1, 1))["outcomes"])
            return EXPECTED[op] in seen

        try:
            wait_for(acts, timeout=120, what=f"{engine.name} to act on {operation}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; it answered {seen}") from None


@contextmanager
def running(engine: Engine, cluster: Cluster, work: Path) -> Iterator[None]:
    work.mkdir(parents=True, exist_ok=True)
    try:
        engine.start(cluster, work)  # (a start that fails half way is stopped too)
        yield
    finally:
        engine.stop()
        uninstall(cluster, engine)


def build_go_engines() -> None:
    """Kyverno and Gatekeeper from their Go modules, once (bench/peers/build.sh)."""
    if (PEERS_BIN / "kyverno").exists() and (PEERS_BIN / "gatekeeper").exists():
        return
    print("building Kyverno and Gatekeeper from their Go modules (once; minutes) ...", flush=True)
    subprocess.run(["bash", str(Path(__file__).parent / "build.sh")], check=True)


def run(work: Path, *, quick: bool = False, only: set[str] | None = None) -> dict[str, Any]:
    """Every engine (or `only` those named, with no engine), each rule, each concurrency."""
    build_go_engines()
    totals = {1: 40, 8: 80, 64: 160} if quick else {1: 300, 8: 600, 64: 1200}
    plane = ControlPlane(build(), apiserver_args=APISERVER_ARGS).start()
    results: dict[str, Any] = {"engines": {}, "skipped": {}}
    try:
        cluster = Cluster(plane.admin, plane)
        cluster.core.create_node({"metadata": {"name": "peers-node"}})
        prepare(cluster)
        apiserver = dict(plane.processes)["kube-apiserver"].pid
        load = Load(plane, work)
        for engine in engines():
            if only and engine.name not in only and not isinstance(engine, NoEngine):
                continue
            if engine.why_not:
                results["skipped"][engine.name] = engine.why_not
                print(f"{engine.name}: skipped: {engine.why_not}", flush=True)
                continue
            print(f"{engine.name} ...", flush=True)
            with running(engine, cluster, work / engine.name.replace(" ", "-")):
                ready(load, engine)
                cells: dict[str, Any] = {}
                for operation in OPERATIONS:
                    for concurrency, total in totals.items():
                        asyncio.run(load.run(operation, min(total, 50), concurrency))  # warm
                        cpu = cpu_seconds(engine.pid) if engine.pid else None
                        api_cpu = cpu_seconds(apiserver)
                        cell = asyncio.run(load.run(operation, total, concurrency))
                        cell["apiserver_cpu_s_per_1000"] = (
                            (cpu_seconds(apiserver) - api_cpu) * 1000 / total
                        )
                        if engine.pid and cpu is not None:
                            cell["engine_cpu_s_per_1000"] = (
                                (cpu_seconds(engine.pid) - cpu) * 1000 / total
                            )
                        cells[f"{operation} c={concurrency}"] = cell
                if engine.pid:
                    cells["peak_rss_mib"] = peak_rss_mib(engine.pid)
                results["engines"][engine.name] = {
                    "rules": list(engine.rules),
                    "notes": engine.notes,
                    "cells": cells,
                }
        return results
    finally:
        plane.stop()


def table(results: dict[str, Any]) -> str:
    """Per rule and concurrency: each engine's added latency over no engine, throughput, CPU
    and memory, and its ratio to ours."""
    engines_ = results["engines"]
    none = engines_["no engine"]["cells"]
    ours = engines_.get("stateful-guard", {}).get("cells", {})
    lines = [
        f"{'rule, clients':24} {'engine':24} {'did':8} {'+p50 ms':>8} {'+p99 ms':>8} "
        f"{'req/s':>7} {'CPU s/1k':>9} {'peak MiB':>9} {'+p50 vs ours':>13}"
    ]
    for key in none:
        if key == "peak_rss_mib":
            continue
        operation = key.split(" ")[0]
        for name, engine in engines_.items():
            if name == "no engine":
                continue
            cell = engine["cells"][key]
            did = max(cell["outcomes"], key=cell["outcomes"].get)
            did += "" if operation in engine["rules"] else "*"  # not its rule: see the notes
            added50 = cell["p50_ms"] - none[key]["p50_ms"]
            added99 = cell["p99_ms"] - none[key]["p99_ms"]
            cpu = cell.get("engine_cpu_s_per_1000")
            if cpu is None:  # in the API server: its CPU over no engine
                cpu = cell["apiserver_cpu_s_per_1000"] - none[key]["apiserver_cpu_s_per_1000"]
            rss = engine["cells"].get("peak_rss_mib")
            versus = ""
            if ours and name != "stateful-guard" and operation in engine["rules"]:
                ours50 = ours[key]["p50_ms"] - none[key]["p50_ms"]
                versus = f"{added50 / ours50:.2f}x" if ours50 > 0.05 else ""
            lines.append(
                f"{key:24} {name:24} {did:8} {added50:8.2f} {added99:8.2f} {cell['rps']:7.0f} "
                f"{cpu:9.2f} {(f'{rss:.0f}' if rss else '-'):>9} {versus:>13}"
            )
    for name, engine in engines_.items():
        for operation, note in engine.get("notes", {}).items():
            lines.append(f"* {name}, {operation}: {note}")
    for name, why in results["skipped"].items():
        lines.append(f"{name}: {why}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    only = {n for a in argv if a.startswith("--only=") for n in a[7:].split(",")}
    work = Path(tempfile.mkdtemp(prefix="sg-peers-"))
    results = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **run(work, quick=quick, only=only or None),
    }
    return save(results, "peers-", table(results))
