"""A real Kubernetes control plane for the end-to-end suite, built from Go modules.

What controller-runtime's envtest does, without downloads: etcd, kube-apiserver,
kube-controller-manager and kubectl (the e2e lifecycle drives charts as users do) are built
with the Go toolchain from `go.etcd.io/etcd/server/v3` and `k8s.io/kubernetes` at pinned
versions (through small wrapper modules, since both modules' own replace directives stop
`go install`), once, into a cache keyed by those versions. The certificates and
client-certificate users come from our own `certs/` code.

    python -m tests.e2e.controlplane build     # what .ci/run does before the tests
    python -m tests.e2e.controlplane run       # a control plane to poke at; Ctrl-C stops it
    python -m tests.e2e.controlplane run --node [--install]
        # ... with a real node (tests/e2e/node.py; root), and stateful-guard installed
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

from certs.authority import KeyPair, make_ca, make_client_cert, make_serving_cert

KUBERNETES = "v1.35.4"
ETCD = "v3.6.16"
# Every staging module k8s.io/kubernetes requires at v0.0.0 is replaced by the published
# v0.<minor>.<patch>; the list is read from k8s.io/kubernetes's own go.mod.
CACHE = Path(os.environ.get("STATEFUL_GUARD_CACHE", Path.home() / ".cache" / "stateful-guard"))
BIN = CACHE / "controlplane" / f"kubernetes-{KUBERNETES}-etcd-{ETCD}" / "bin"
# The control plane, and the node's kubelet, kube-scheduler and kube-proxy (tests/e2e/node.py).
COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "kubelet",
    "kube-scheduler",
    "kube-proxy",
)
BINARIES = ("etcd", *COMMANDS)
# Tools that render deploy/ exactly as users would (kustomize v5.8.3 wants Go 1.27).
TOOLS = {
    "kustomize": "sigs.k8s.io/kustomize/kustomize/v5@v5.8.1",
    "helm": "helm.sh/helm/v3/cmd/helm@v3.22.0",
    # The node's CRI client: removes every pod sandbox (and its network) when the node stops.
    "crictl": "sigs.k8s.io/cri-tools/cmd/crictl@v1.34.0",
}
TOOLS_BIN = CACHE / "tools" / "-".join(p.rsplit("@", 1)[1] for p in TOOLS.values()) / "bin"

ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""
TOOLS_GO = """//go:build tools

package controlplane

import (
\t_ "k8s.io/kubernetes/cmd/kube-apiserver"
\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"
\t_ "k8s.io/kubernetes/cmd/kubectl"
)
"""


class NoToolchain(RuntimeError):
    """The Go toolchain is missing, so nothing can be built (and nothing is cached)."""


def _need_go() -> None:
    if shutil.which("go") is None:
        raise NoToolchain("no Go toolchain: cannot build the test control plane and tools")


def say(message: str) -> None:
    print(f"[controlplane] {message}", file=sys.stderr, flush=True)


def _go(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    subprocess.run(["go", *args], cwd=cwd, env=env, check=True)


def _module_file(module: str, version: str, cwd: Path) -> Path:
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(json.loads(out)["GoMod"])


def _kubernetes_wrapper(src: Path) -> None:
    src.mkdir(parents=True, exist_ok=True)
    upstream = _module_file("k8s.io/kubernetes", KUBERNETES, src).read_text()
    minor, patch = KUBERNETES.lstrip("v").split(".")[1:3]
    staging = [line.split()[0] for line in upstream.splitlines() if "=> ./staging/" in line]
    godebug = next((line for line in upstream.splitlines() if line.startswith("godebug")), "")
    go_line = next(line for line in upstream.splitlines() if line.startswith("go "))
    replaces = "\n".join(f"\t{m} => {m} v0.{minor}.{patch}" for m in staging)
    (src / "go.mod").write_text(
        f"module stateful-guard.test/controlplane\n\n{go_line}\n\n{godebug}\n\n"
        f"require k8s.io/kubernetes {KUBERNETES}\n\nreplace (\n{replaces}\n)\n"
    )
    (src / "tools.go").write_text(TOOLS_GO)


def build(*, force: bool = False) -> Path:
    """Build the binaries into the cache unless they are there; returns the bin directory."""
    if not force and all((BIN / b).exists() for b in BINARIES):
        return BIN
    _need_go()
    started = time.monotonic()
    say(
        f"building {', '.join(COMMANDS)} {KUBERNETES}, and etcd "
        f"{ETCD} from their Go modules into {BIN}; the first build takes several minutes"
    )
    work = BIN.parent / "src"
    version = KUBERNETES.lstrip("v")
    ldflags = " ".join(
        [
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion={KUBERNETES}",
            f"-X k8s.io/component-base/version.gitMajor={version.split('.')[0]}",
            f"-X k8s.io/component-base/version.gitMinor={version.split('.')[1]}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
        ]
    )
    kube = work / "kubernetes"
    _kubernetes_wrapper(kube)
    _go(["mod", "tidy"], kube)
    BIN.mkdir(parents=True, exist_ok=True)
    _go(
        [
            "build",
            "-trimpath",
            "-ldflags",
            ldflags,
            "-o",
            str(BIN) + "/",
            *(f"k8s.io/kubernetes/cmd/{command}" for command in COMMANDS),
        ],
        kube,
    )
    say(f"kubernetes built in {time.monotonic() - started:.0f}s")
    etcd = work / "etcd"
    etcd.mkdir(parents=True, exist_ok=True)
    (etcd / "go.mod").write_text(
        f"module stateful-guard.test/etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 {ETCD}\n"
    )
    (etcd / "main.go").write_text(ETCD_MAIN)
    _go(["mod", "tidy"], etcd)
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(BIN / "etcd"), "."], etcd)
    say(f"control plane built in {time.monotonic() - started:.0f}s")
    return BIN


def tool(name: str) -> Path:
    """A rendering tool, built with `go install` into the cache the first time."""
    path = TOOLS_BIN / name
    if not path.exists():
        _need_go()
        say(f"building {TOOLS[name]} into {TOOLS_BIN}")
        env = {**os.environ, "GOBIN": str(TOOLS_BIN), "CGO_ENABLED": "0"}
        subprocess.run(["go", "install", TOOLS[name]], env=env, check=True)
    return path


# cert-manager's CRDs, to validate deploy/components/cert-manager against the API server
# (cert-manager itself cannot run without a node). Its module carries them as Helm-templated
# sources: the templating is only in comments, labels and annotations, which are dropped.
CERT_MANAGER = "github.com/cert-manager/cert-manager@v1.16.2"


def cert_manager_crds() -> list[dict[str, Any]]:
    """cert-manager's CustomResourceDefinitions, from its Go module (downloaded once)."""
    found = subprocess.run(
        ["go", "mod", "download", "-json", CERT_MANAGER],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    crds = Path(json.loads(found.stdout)["Dir"]) / "deploy" / "crds"
    documents = []
    for path in sorted(crds.glob("crd-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["metadata"] = {"name": doc["metadata"]["name"]}
                documents.append(doc)
    return documents


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeconfig(path: Path, *, server: str, ca: KeyPair, user: KeyPair, name: str) -> Path:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": name,
                "clusters": [
                    {
                        "name": "e2e",
                        "cluster": {
                            "server": server,
                            "certificate-authority-data": b64(ca.cert_pem),
                        },
                    }
                ],
                "users": [
                    {
                        "name": name,
                        "user": {
                            "client-certificate-data": b64(user.cert_pem),
                            "client-key-data": b64(user.key_pem),
                        },
                    }
                ],
                "contexts": [{"name": name, "context": {"cluster": "e2e", "user": name}}],
            }
        )
    )
    path.chmod(0o600)
    return path


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, in a temp directory."""

    bin: Path
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sg-e2e-")))
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    ca: KeyPair = field(default_factory=lambda: make_ca("stateful-guard-e2e-ca"))
    server: str = ""
    # With a node (tests/e2e/node.py): the host address pods reach the API server at (it then
    # listens on every address and advertises this one as the `kubernetes` Service's endpoint).
    node_ip: str | None = None
    # More kube-apiserver flags (feature gates, runtime-config: bench/peers).
    apiserver_args: tuple[str, ...] = ()

    def user(self, name: str, *, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig for a client-certificate user (CN = user, O = groups)."""
        cert = make_client_cert(self.ca, user=name, groups=groups, days=2)
        safe = name.replace(":", "_")
        return kubeconfig(
            self.work / f"{safe}.kubeconfig", server=self.server, ca=self.ca, user=cert, name=safe
        )

    @property
    def admin(self) -> Path:
        return self.work / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        """The CA that signed every client certificate, the API server's included."""
        return self.work / "ca.crt"

    def _start(self, name: str, args: list[str], *, executable: str | None = None) -> None:
        log = (self.work / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [executable or str(self.bin / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append((name, process))

    def _wait(self, name: str, check: Callable[[], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        process = dict(self.processes)[name]
        last: Exception | None = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited {process.returncode}:\n{self.log(name)}")
            try:
                if check():
                    return
            except Exception as exc:  # not up yet: refused, 404, not found
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout}s ({last}):\n{self.log(name)}")

    def log(self, name: str, tail: int = 40) -> str:
        path = self.work / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-tail:])

    def start(self) -> ControlPlane:
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        serving = make_serving_cert(
            self.ca,
            dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            ips=["127.0.0.1", "10.0.0.1", *([self.node_ip] if self.node_ip else [])],
            days=2,
        )
        files = {
            "ca.crt": self.ca.cert_pem,
            "ca.key": self.ca.key_pem,
            "apiserver.crt": serving.cert_pem,
            "apiserver.key": serving.key_pem,
        }
        sa_key = make_ca("service-accounts").key  # any P-256 key
        files["sa.key"] = sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        files["sa.pub"] = sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for name, data in files.items():
            (self.work / name).write_bytes(data)
        w = self.work

        self._start(
            "etcd",
            [
                f"--data-dir={w / 'etcd'}",
                "--unsafe-no-fsync",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--log-level=warn",
            ],
        )
        self._wait(
            "etcd",
            lambda: (
                b"true"
                in urllib.request.urlopen(f"http://127.0.0.1:{etcd_port}/health", timeout=2).read()
            ),
        )

        # The API server presents a client certificate to every webhook it calls (user "*"),
        # so the webhook under test can require one: serve --client-ca.
        webhook_client = make_client_cert(self.ca, user="kube-apiserver-webhook-client")
        client_kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "users": [
                {
                    "name": "*",
                    "user": {
                        "client-certificate-data": base64.b64encode(
                            webhook_client.cert_pem
                        ).decode(),
                        "client-key-data": base64.b64encode(webhook_client.key_pem).decode(),
                    },
                }
            ],
        }
        (w / "webhook-client.kubeconfig").write_text(yaml.safe_dump(client_kubeconfig))
        plugin_config = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(w / "webhook-client.kubeconfig"),
        }
        (w / "admission.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "apiserver.config.k8s.io/v1",
                    "kind": "AdmissionConfiguration",
                    "plugins": [
                        {"name": name, "configuration": plugin_config}
                        for name in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")
                    ],
                }
            )
        )
        self._start(
            "kube-apiserver",
            [
                f"--admission-control-config-file={w / 'admission.yaml'}",
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={'0.0.0.0' if self.node_ip else '127.0.0.1'}",
                f"--advertise-address={self.node_ip or '127.0.0.1'}",
                f"--secure-port={api_port}",
                f"--cert-dir={w / 'apiserver-certs'}",
                f"--tls-cert-file={w / 'apiserver.crt'}",
                f"--tls-private-key-file={w / 'apiserver.key'}",
                f"--client-ca-file={w / 'ca.crt'}",
                *(self._node_apiserver_flags() if self.node_ip else ["--authorization-mode=RBAC"]),
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={w / 'sa.pub'}",
                f"--service-account-signing-key-file={w / 'sa.key'}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
                *self.apiserver_args,
            ],
        )
        kubeconfig(
            self.admin,
            server=self.server,
            ca=self.ca,
            user=make_client_cert(self.ca, user="e2e-admin", groups=["system:masters"]),
            name="admin",
        )
        admin = self._ssl_admin()
        self._wait(
            "kube-apiserver",
            lambda: (
                urllib.request.urlopen(f"{self.server}/readyz", context=admin, timeout=2).status
                == 200
            ),
        )

        manager = kubeconfig(
            w / "controller-manager.kubeconfig",
            server=self.server,
            ca=self.ca,
            user=make_client_cert(self.ca, user="system:kube-controller-manager"),
            name="controller-manager",
        )
        self._start(
            "kube-controller-manager",
            [
                f"--kubeconfig={manager}",
                "--leader-elect=false",
                "--secure-port=0",
                "--use-service-account-credentials=true",
                f"--root-ca-file={w / 'ca.crt'}",
                *(
                    self._node_manager_flags()
                    if self.node_ip
                    else [
                        "--controllers=statefulset-controller,serviceaccount-controller,"
                        "garbage-collector-controller,persistentvolumeclaim-protection-controller,"
                        "namespace-controller,deployment-controller,replicaset-controller,"
                        # the built-in edit, admin and view roles get their rules
                        "clusterrole-aggregation-controller"
                    ]
                ),
                "--concurrent-gc-syncs=5",
                "--v=1",
            ],
        )
        time.sleep(0.5)
        self._wait("kube-controller-manager", lambda: True)
        return self

    def _node_apiserver_flags(self) -> list[str]:
        """What a node needs of the API server: the Node authorizer and NodeRestriction, a
        client certificate for the kubelets' APIs (logs, exec), and webhook Services reached
        at their endpoints' pod addresses (there is no kube-proxy on the API server's side)."""
        w = self.work
        client = make_client_cert(
            self.ca, user="kube-apiserver-kubelet-client", groups=["system:masters"]
        )
        (w / "kubelet-client.crt").write_bytes(client.cert_pem)
        (w / "kubelet-client.key").write_bytes(client.key_pem)
        return [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={w / 'kubelet-client.crt'}",
            f"--kubelet-client-key={w / 'kubelet-client.key'}",
            f"--kubelet-certificate-authority={w / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--enable-aggregator-routing=true",
        ]

    def _node_manager_flags(self) -> list[str]:
        """Every controller (node lifecycle, endpoints, volumes), the hostPath provisioner
        for claims, and a node declared unreachable 20 s after its last heartbeat."""
        w = self.work
        return [
            "--controllers=*",
            "--enable-hostpath-provisioner=true",
            "--pv-recycler-pod-template-filepath-hostpath=",
            f"--cluster-signing-cert-file={w / 'ca.crt'}",
            f"--cluster-signing-key-file={w / 'ca.key'}",
            f"--service-account-private-key-file={w / 'sa.key'}",
            "--allocate-node-cidrs=false",
            "--node-monitor-period=2s",
            "--node-monitor-grace-period=20s",
        ]

    def _ssl_admin(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        cert = self.work / "admin-client.pem"
        pair = make_client_cert(self.ca, user="e2e-probe", groups=["system:masters"])
        cert.write_bytes(pair.cert_pem + pair.key_pem)
        context.load_cert_chain(cert)
        return context

    def version(self) -> str:
        with urllib.request.urlopen(
            f"{self.server}/version", context=self._ssl_admin(), timeout=5
        ) as response:
            return str(json.load(response)["gitVersion"])

    def stop_process(self, name: str) -> None:
        """Stop one of the processes it started (SIGTERM, then SIGKILL after 20 s)."""
        for index, (known, process) in enumerate(self.processes):
            if known == name:
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                del self.processes[index]
                return

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        shutil.rmtree(self.work, ignore_errors=True)


def _run(*, node: bool, install: bool) -> int:
    """Start, print KUBECONFIG=<path> on a line of its own once usable, keep it up until
    interrupted (Ctrl-C or SIGTERM), then stop all of it."""
    if install and not node:
        print("run: --install needs --node (the webhook runs in pods)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on SIGTERM too
    if node:
        from tests.e2e import images
        from tests.e2e.node import NodeCluster

        cluster = NodeCluster().start()
        stop, kubeconfig_path = cluster.stop, cluster.kubeconfig
    else:
        plane = ControlPlane(build()).start()
        stop, kubeconfig_path = plane.stop, plane.admin
    try:
        if install:
            certs = cluster.plane.work / "install-certs"
            say(f"installing stateful-guard cluster-wide ({images.WEBHOOK}) with deploy/install.sh")
            cluster.run(
                "deploy/install.sh",
                "--image",
                images.WEBHOOK,
                "--certs",
                str(certs),
                "cluster-wide",
            )
            say(
                f"installed; images loaded (IfNotPresent): {images.WEBHOOK}, {images.BUSYBOX}; "
                "default StorageClass hostpath"
            )
        print(f"KUBECONFIG={kubeconfig_path}", flush=True)
        say("up; Ctrl-C stops everything")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        say("stopping")
        stop()
    return 0


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "build"
    if command == "build":
        build(force="--force" in argv)
        for name in TOOLS:
            tool(name)
        say(f"cert-manager CRDs: {len(cert_manager_crds())}")
        say(f"binaries in {BIN} and {TOOLS_BIN}")
        return 0
    if command == "run":
        return _run(node="--node" in argv, install="--install" in argv)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
