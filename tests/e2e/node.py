"""A real node for the e2e control plane, so that pods run: what Kubernetes' own
`hack/local-up-cluster.sh` does, from Go modules and Debian packages.

kubelet, kube-scheduler and kube-proxy come from the same `k8s.io/kubernetes` module as the
API server (built with it, `controlplane.build`); containerd, runc and the CNI plugins from
Debian (`.ci/run` installs them with apt-get); every image is built here (there is no
registry): the pause image from Kubernetes' own pause.c, busybox from Debian's busybox-static,
the webhook's from the Dockerfile (`images.py`). Two fixes this machine kind needs
(`../shared/real-node.md`): containerd's `restrict_oom_score_adj` (root here lacks
CAP_SYS_RESOURCE, so runc cannot give sandboxes a negative oom_score_adj), and a second,
fake node kept Ready (`keeper`): with one node the node-lifecycle controller treats a NotReady
node as a control-plane outage and never taints it NoExecute, so pods would never be evicted.

One such cluster per machine at a time: the kubelet's ports 10250/10248, kube-proxy's
10249/10256, the CNI bridge and the kubelet's fixed host paths are shared.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from certs.authority import make_serving_cert
from tests.e2e import images
from tests.e2e.cluster import Cluster, wait_for
from tests.e2e.controlplane import ControlPlane, build, say, tool
from tests.support import ROOT

NAME = "e2e-node"
KEEPER = "keeper"
POD_CIDR = "10.88.0.0/16"
BRIDGE = "cni-sg0"
STORAGE_CLASS = "hostpath"
# Host paths the kubelet, the CNI plugins and the hostPath provisioner use whatever they are
# told: removed again when the node stops.
HOST_PATHS = (
    "/var/log/pods",
    "/var/log/containers",
    "/tmp/hostpath_pv",
    "/var/lib/kubelet/device-plugins",
)
DEBIAN_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "conntrack")


def primary_ip() -> str:
    """The host's address on its default route: where pods reach the API server."""
    out = subprocess.run(
        ["ip", "-4", "-j", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=True
    ).stdout
    return str(json.loads(out)[0]["prefsrc"])


def node_ready(core: k8s.CoreV1Api, name: str = NAME) -> bool:
    conditions = core.read_node(name).status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def missing() -> list[str]:
    """What this host lacks to run a node (empty: it can)."""
    lacking = [
        tool
        for tool in ("containerd", "runc", "iptables", "ip", "gcc", "busybox", *images.TOOLS)
        if shutil.which(tool) is None
    ]
    if not Path("/usr/lib/cni/bridge").exists():
        lacking.append("containernetworking-plugins")
    if os.geteuid() != 0:
        lacking.append("root")
    return lacking


CONTAINERD = """version = 2
root = "{w}/containerd/root"
state = "{w}/containerd/state"
[grpc]
  address = "{w}/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  # root lacks CAP_SYS_RESOURCE here: without this, runc cannot start any sandbox
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{w}/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{w}/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
"""


class Node:
    """containerd, kubelet, kube-scheduler, kube-proxy and the keeper, on a control plane
    started with `node_ip` (which gives the API server what nodes need)."""

    def __init__(self, plane: ControlPlane) -> None:
        assert plane.node_ip, "the control plane was started without node_ip"
        self.plane = plane
        self.work = plane.work
        self.ip = plane.node_ip
        self.socket = self.work / "containerd" / "containerd.sock"
        self._keeper_stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self._ip_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        self.api = k8s_config.new_client_from_config(config_file=str(plane.admin))

    # --- start ---------------------------------------------------------------------------

    def start(self, archives: list[Path]) -> Node:
        started = time.monotonic()
        self._write_configs()
        self._start_containerd(archives)
        self._start("kube-scheduler", self._scheduler_args())
        self._start("kubelet", self._kubelet_args())
        self._start("kube-proxy", [f"--config={self.work / 'kube-proxy.yaml'}", "--v=1"])
        self._keeper = threading.Thread(target=self._keep, name="keeper", daemon=True)
        self._keeper.start()
        core = k8s.CoreV1Api(self.api)
        self.plane._wait("kubelet", lambda: node_ready(core), timeout=120)
        say(f"node {NAME} Ready in {time.monotonic() - started:.0f}s")
        return self

    def _start(self, name: str, args: list[str], executable: str | None = None) -> None:
        self.plane._start(name, args, executable=executable)

    def _write_configs(self) -> None:
        w = self.work
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        (w / "containerd.toml").write_text(
            CONTAINERD.format(w=w, pause=images.PAUSE, runc=shutil.which("runc"))
        )
        bridge = {
            "cniVersion": "1.0.0",
            "name": "sg-e2e",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(w / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "loopback"},
            ],
        }
        (w / "cni" / "net.d" / "10-bridge.conflist").write_text(json.dumps(bridge, indent=1))
        nameserver = next(
            (
                line.split()[1]
                for line in Path("/etc/resolv.conf").read_text().splitlines()
                if line.startswith("nameserver")
            ),
            "127.0.0.1",
        )
        (w / "resolv.conf").write_text(f"nameserver {nameserver}\n")
        serving = make_serving_cert(
            self.plane.ca, dns_names=[NAME, "localhost"], ips=["127.0.0.1", self.ip], days=2
        )
        (w / "kubelet-serving.crt").write_bytes(serving.cert_pem)
        (w / "kubelet-serving.key").write_bytes(serving.key_pem)
        kubelet = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "0.0.0.0",
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(w / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(w / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(w / "kubelet-serving.key"),
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,  # this machine kind is cgroup v1; kubelet 1.35 refuses it
            "failSwapOn": False,
            "resolvConf": str(w / "resolv.conf"),
            "clusterDomain": "cluster.local",
            # Images cannot be pulled again: never garbage-collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "imageMinimumGCAge": "876000h",
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "serializeImagePulls": False,
            "maxPods": 60,
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "4s",
            "nodeStatusReportFrequency": "10s",
            "shutdownGracePeriod": "0s",
        }
        (w / "kubelet.yaml").write_text(yaml.safe_dump(kubelet))
        proxy = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.plane.user("system:kube-proxy"))},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NAME,
            "bindAddress": "0.0.0.0",
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # Leave the host's sysctls alone (conntrack timeouts, route_localnet).
            "conntrack": {
                "maxPerCore": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False},
            "nodePortAddresses": ["primary"],
        }
        (w / "kube-proxy.yaml").write_text(yaml.safe_dump(proxy))

    def _start_containerd(self, archives: list[Path]) -> None:
        self._start(
            "containerd",
            ["--config", str(self.work / "containerd.toml")],
            executable=shutil.which("containerd"),
        )
        self.plane._wait("containerd", lambda: self._ctr("version").returncode == 0)
        for archive in archives:
            done = self._ctr("-n", "k8s.io", "images", "import", "--all-platforms", str(archive))
            if done.returncode != 0:
                raise RuntimeError(f"importing {archive}: {done.stderr}")

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.socket), *args], capture_output=True, text=True
        )

    def _scheduler_args(self) -> list[str]:
        config = self.plane.user("system:kube-scheduler")
        return [
            f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            "--v=1",
        ]

    def _kubelet_args(self) -> list[str]:
        config = self.plane.user(f"system:node:{NAME}", groups=("system:nodes",))
        return [
            f"--config={self.work / 'kubelet.yaml'}",
            f"--kubeconfig={config}",
            f"--root-dir={self.work / 'kubelet'}",
            f"--hostname-override={NAME}",
            f"--node-ip={self.ip}",
            "--v=1",
        ]

    def _keep(self) -> None:
        """The keeper node: registered unschedulable and tainted, its Lease and Ready
        condition renewed every 5 s, so that the real node's failure is a node failure."""
        core = k8s.CoreV1Api(self.api)
        leases = k8s.CoordinationV1Api(self.api)
        with contextlib.suppress(k8s.ApiException):
            core.create_node(
                {
                    "metadata": {"name": KEEPER, "labels": {"kubernetes.io/hostname": KEEPER}},
                    "spec": {
                        "unschedulable": True,
                        "taints": [
                            {"key": KEEPER, "value": "true", "effect": "NoSchedule"},
                            {"key": KEEPER, "value": "true", "effect": "NoExecute"},
                        ],
                    },
                }
            )
        with contextlib.suppress(k8s.ApiException):
            leases.create_namespaced_lease(
                "kube-node-lease",
                {
                    "metadata": {"name": KEEPER},
                    "spec": {"holderIdentity": KEEPER, "leaseDurationSeconds": 40},
                },
            )
        while not self._keeper_stop.is_set():
            now = datetime.now(UTC)
            try:
                leases.patch_namespaced_lease(
                    KEEPER,
                    "kube-node-lease",
                    {"spec": {"renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}},
                )
                core.patch_node_status(
                    KEEPER,
                    {
                        "status": {
                            "conditions": [
                                {
                                    "type": "Ready",
                                    "status": "True",
                                    "reason": "KeeperReady",
                                    "message": "stands in for a healthy zone",
                                    "lastHeartbeatTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                                }
                            ]
                        }
                    },
                )
            except Exception as exc:  # the API server restarting: try again next turn
                say(f"keeper: {exc}")
            self._keeper_stop.wait(5)

    def tag_image(self, image: str, tag: str) -> None:
        """A second name for an imported image (an upgrade's new tag, with nothing pulled)."""
        done = self._ctr("-n", "k8s.io", "images", "tag", "--force", image, tag)
        if done.returncode != 0:
            raise RuntimeError(f"ctr images tag {image} {tag}: {done.stderr}")

    # --- failure -------------------------------------------------------------------------

    def kubelet(self) -> Any:
        return dict(self.plane.processes)["kubelet"]

    def pause_kubelet(self) -> None:
        """SIGSTOP: the node stops heartbeating, its containers keep running."""
        self.kubelet().send_signal(signal.SIGSTOP)

    def resume_kubelet(self) -> None:
        self.kubelet().send_signal(signal.SIGCONT)

    # --- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop what start() started and undo its host changes (network, cgroups, paths)."""
        self._keeper_stop.set()
        with contextlib.suppress(ProcessLookupError):
            self.resume_kubelet()
        self.plane.stop_process("kube-proxy")
        with contextlib.suppress(OSError):
            subprocess.run(
                [str(self.plane.bin / "kube-proxy"), "--cleanup"],
                capture_output=True,
                timeout=30,
            )
        self.plane.stop_process("kubelet")
        if self.socket.exists():
            # Every sandbox through CRI, so the CNI plugin releases its veth and addresses.
            removed = subprocess.run(
                [
                    str(tool("crictl")),
                    f"--runtime-endpoint=unix://{self.socket}",
                    "--timeout=60s",  # a sandbox stops as its containers do, not in 2 s
                    "rmp",
                    "-fa",
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if removed.returncode != 0:
                say(f"crictl rmp -fa: {removed.stderr.strip()}")
        self.plane.stop_process("kube-scheduler")
        self.plane.stop_process("containerd")
        prefix = str(self.work) + "/"
        mounts = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)
        ]
        for mount in sorted(mounts, reverse=True):
            if subprocess.run(["umount", mount], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mount], capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        self._drop_iptables_chains()
        for hierarchy in Path("/sys/fs/cgroup").glob("*/kubepods"):
            for directory in sorted(hierarchy.rglob("*"), key=lambda p: -len(p.parts)):
                if directory.is_dir():
                    with contextlib.suppress(OSError):
                        directory.rmdir()
            with contextlib.suppress(OSError):
                hierarchy.rmdir()
        Path("/proc/sys/net/ipv4/ip_forward").write_text(self._ip_forward)
        for path in HOST_PATHS:
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            Path("/var/lib/kubelet").rmdir()

    @staticmethod
    def _drop_iptables_chains() -> None:
        """The kubelet's own chains (kube-proxy --cleanup removes its; CNI DEL its rules)."""
        for table in ("filter", "nat", "mangle"):
            rules = subprocess.run(
                ["iptables", "-t", table, "-S"], capture_output=True, text=True
            ).stdout.splitlines()
            chains = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
            for rule in rules:
                if rule.startswith("-A ") and any(f"-j {c}" in rule for c in chains):
                    subprocess.run(
                        ["iptables", "-t", table, "-D", *rule.split()[1:]], capture_output=True
                    )
            for chain in chains:
                subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
                subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)


class NodeCluster:
    """A control plane with a real node, and the images pods may use loaded into it."""

    def __init__(self) -> None:
        self.plane = ControlPlane(build(), node_ip=primary_ip())
        self.node: Node | None = None
        self.api: Cluster  # once started

    def start(self) -> NodeCluster:
        archives = images.node_archives()
        self.plane.start()
        try:
            self.node = Node(self.plane).start(archives)
            self.api = Cluster(self.plane.admin, self.plane)
            wait_for(
                lambda: self.api.core.read_namespaced_service_account("default", "default"),
                what="the default ServiceAccount",
            )
            self._default_storage_class()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def kubeconfig(self) -> Path:
        return self.plane.admin

    def env(self) -> dict[str, str]:
        """What a user's shell has: KUBECONFIG, and kubectl, helm and stateful-guard on PATH."""
        path = [str(self.plane.bin), str(tool("helm").parent), str(Path(sys.executable).parent)]
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": os.pathsep.join([*path, os.environ.get("PATH", "")]),
        }

    def run(
        self, *command: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A command as the README gives it, from the checkout."""
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
            input=input_text,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def kubectl(
        self, *args: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, check=check, input_text=input_text)

    def _default_storage_class(self) -> None:
        """`hostpath`, the cluster's default: kube-controller-manager's hostPath provisioner
        makes a volume under /tmp/hostpath_pv for each claim."""
        self.api.storage.create_storage_class(
            {
                "metadata": {
                    "name": STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "kubernetes.io/host-path",
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
            }
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{self.plane.log(name)}"
            for name in ("kubelet", "containerd", "kube-apiserver", "kube-controller-manager")
        )

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        self.plane.stop()
