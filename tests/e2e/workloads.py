"""Workloads for the real node: busybox (the image the node has) standing in for the
applications of `../shared/examples/`, keeping each example's shape (names, claims, the
Service it expects) and replacing only what needs a registry."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tests.e2e.images import BUSYBOX
from tests.support import ROOT

EXAMPLES = ROOT.parent / "shared" / "examples"

# Serves its hostname (and what is in /data) on 8080 and stops at once on SIGTERM.
SERVE = (
    "trap 'exit 0' TERM; mkdir -p /data; hostname > /data/hello; httpd -f -p 8080 -h /data & wait"
)
# Tolerating an unreachable node for 10 s (the default is 300): the node-lifecycle
# controller evicts the pods 10 s after the node stops answering.
FAST_EVICTION = [
    {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
]


def stand_in(name: str, command: str = SERVE) -> dict[str, Any]:
    return {
        "name": name,
        "image": BUSYBOX,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", command],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }


def stand_in_set(name: str, *, replicas: int = 2) -> dict[str, Any]:
    """A set with its claim template, serving on each pod's IP."""
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "tolerations": FAST_EVICTION,
                    "containers": [
                        {
                            **stand_in("app"),
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "10Mi"}},
                    },
                }
            ],
        },
    }


def example(name: str, kind: str) -> dict[str, Any]:
    for doc in yaml.safe_load_all((EXAMPLES / name).read_text()):
        if doc and doc["kind"] == kind:
            return dict(doc)
    raise LookupError(f"{name} has no {kind}")


def mysql_with_preset() -> dict[str, Any]:
    """The replicated MySQL example as the README suggests adopting it: its hand-written
    server-id init script dropped for the annotation `stateful-guard.io/server-id: mysql`;
    mysqld's stand-in prints the file the preset writes where mysqld reads its conf.d."""
    mysql = copy.deepcopy(example("mysql-replicated.yaml", "StatefulSet"))
    mysql["metadata"]["annotations"] = {"stateful-guard.io/server-id": "mysql"}
    pod = mysql["spec"]["template"]["spec"]
    del pod["initContainers"]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "config-map"]
    pod["terminationGracePeriodSeconds"] = 5
    (container,) = pod["containers"]
    container.update(stand_in("mysql"))
    for claim in mysql["spec"]["volumeClaimTemplates"]:
        claim["spec"]["resources"]["requests"]["storage"] = "10Mi"
    return mysql


def zookeeper_with_preset(replicas: int = 3) -> dict[str, Any]:
    zookeeper = stand_in_set("zk", replicas=replicas)
    zookeeper["metadata"]["annotations"] = {"stateful-guard.io/server-id": "zookeeper"}
    return zookeeper


def random_generator() -> dict[str, Any]:
    """The example's set alone (its Service is left to headless-service), its generator's
    stand-in writing to the example's `logs` claim."""
    rg = copy.deepcopy(example("random-generator.yaml", "StatefulSet"))
    pod = rg["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 5
    (container,) = pod["containers"]
    container.update(stand_in("random-generator", SERVE.replace("/data", "/logs")))
    return rg
