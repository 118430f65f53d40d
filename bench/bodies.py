"""Realistic request bodies and objects for the benchmark."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.support import example, request_dict, review_body, statefulset_pod


def big_statefulset(name: str = "mysql", namespace: str = "db") -> dict[str, Any]:
    """The docs' MySQL set grown to what production sets carry: ~6 KB with its envelope."""
    sts = example("mysql-replicated.yaml", "StatefulSet")
    sts["metadata"].update(
        namespace=namespace,
        name=name,
        labels={
            "app.kubernetes.io/name": "mysql",
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/part-of": "orders",
            "team": "payments",
        },
        annotations={"stateful-guard.io/server-id": "mysql"},
    )
    del sts["spec"]["serviceName"]
    pod = sts["spec"]["template"]["spec"]
    mysql = pod["containers"][0]
    mysql["env"] = [{"name": f"MYSQL_OPTION_{i}", "value": f"value-{i}"} for i in range(16)]
    mysql["env"].append(
        {
            "name": "MYSQL_ROOT_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "mysql", "key": "password"}},
        }
    )
    mysql["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    mysql["readinessProbe"] = {
        "exec": {"command": ["mysql", "-h", "127.0.0.1", "-e", "SELECT 1"]},
        "initialDelaySeconds": 5,
        "periodSeconds": 2,
    }
    sidecar = copy.deepcopy(mysql)
    sidecar.update(
        name="xtrabackup",
        image="gcr.io/google-samples/xtrabackup:1.0",
        ports=[{"name": "xtrabackup", "containerPort": 3307}],
    )
    pod["containers"].append(sidecar)
    sts["spec"]["volumeClaimTemplates"].append(
        copy.deepcopy(sts["spec"]["volumeClaimTemplates"][0])
    )
    sts["spec"]["volumeClaimTemplates"][1]["metadata"]["name"] = "binlog"
    sts["metadata"]["managedFields"] = managed_fields("kubectl-client-side-apply", 64)
    return sts


def managed_fields(manager: str, fields: int) -> list[dict[str, Any]]:
    """What the API server keeps in every object it sends: who set which field."""
    return [
        {
            "manager": manager,
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-11-22T01:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {f"f:field{i}": {} for i in range(fields)}},
        }
    ]


def create_body() -> bytes:
    return json.dumps(
        review_body(request_dict("CREATE", big_statefulset(), namespace="db", name="mysql"))
    ).encode()


def delete_body() -> bytes:
    pod = statefulset_pod("mysql-1", namespace="db")
    pod["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/restartedAt": "2026-11-22T01:00:00Z",
        "prometheus.io/scrape": "true",
    }
    pod["spec"]["containers"][0].update(
        env=[{"name": f"OPTION_{i}", "value": f"value-{i}"} for i in range(20)],
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}},
    )
    pod["status"].update(
        conditions=[
            {"type": t, "status": "True", "lastTransitionTime": "2026-11-22T01:00:00Z"}
            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        podIP="10.244.1.17",
        hostIP="172.18.0.3",
    )
    pod["metadata"]["managedFields"] = managed_fields("kubelet", 72)
    options = {
        "kind": "DeleteOptions",
        "apiVersion": "meta.k8s.io/v1",
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Background",
    }
    return json.dumps(
        review_body(request_dict("DELETE", old=pod, namespace="db", options=options))
    ).encode()
