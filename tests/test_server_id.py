"""The server-id init container's script, run for real (sh) as the kubelet would run it."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from tests.support import example, make_request
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine


def mutated_set(
    preset: str, *, offset: str | None = None, start: int | None = None
) -> dict[str, Any]:
    statefulset = example("mysql-replicated.yaml", "StatefulSet")
    notes = {"stateful-guard.io/server-id": preset}
    if offset is not None:
        notes["stateful-guard.io/server-id-offset"] = offset
    statefulset["metadata"]["annotations"] = notes
    if start is not None:
        statefulset["spec"]["ordinals"] = {"start": start}
    outcome = Engine(MemoryView()).mutate(make_request("CREATE", statefulset, namespace="db"))
    return jsonpatch.apply_patch(copy.deepcopy(statefulset), outcome.patch)  # type: ignore[no-any-return]


def run_init(
    statefulset: dict[str, Any], tmp_path: Path, *, pod_index: str | None, hostname: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the init container's command with its env, the downward API filled as the kubelet
    fills it, and its volume at a temp directory."""
    pod = statefulset["spec"]["template"]["spec"]
    init = next(c for c in pod["initContainers"] if c["name"] == "stateful-guard-server-id")
    env = {"PATH": os.environ["PATH"], "HOSTNAME": hostname}
    for var in init["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif pod_index is not None:  # the pod-index label through the downward API
            env[var["name"]] = pod_index
    env["SERVER_ID_DIR"] = str(tmp_path)
    run = subprocess.run(init["command"], env=env, capture_output=True, text=True, check=False)
    return run, tmp_path / env["SERVER_ID_FILE"]


@pytest.mark.parametrize(
    ("pod_index", "hostname", "server_id"),
    [
        pytest.param("0", "mysql-0", 100, id="mysql-0"),
        pytest.param("1", "mysql-1", 101, id="mysql-1"),
        pytest.param("2", "mysql-2", 102, id="mysql-2"),
        pytest.param(None, "mysql-2", 102, id="no-pod-index-label-hostname-fallback"),
        pytest.param("", "my-sql-db-12", 112, id="empty-label-dashed-hostname"),
    ],
)
def test_mysql_example_gets_server_ids_100_101_102(
    tmp_path: Path, pod_index: str | None, hostname: str, server_id: int
) -> None:
    run, written = run_init(mutated_set("mysql"), tmp_path, pod_index=pod_index, hostname=hostname)
    assert run.returncode == 0, run.stderr
    assert written.read_text() == f"[mysqld]\nserver-id={server_id}\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_mysql_reads_it_from_conf_d() -> None:
    pod = mutated_set("mysql")["spec"]["template"]["spec"]
    mysql = pod["containers"][0]
    assert {
        "name": "stateful-guard-server-id",
        "mountPath": "/etc/mysql/conf.d/stateful-guard-server-id.cnf",
        "subPath": "server-id.cnf",
    } in mysql["volumeMounts"]
    assert {"name": "stateful-guard-server-id", "emptyDir": {}} in pod["volumes"]
    assert pod["initContainers"][0]["name"] == "stateful-guard-server-id", "runs first"
    assert {
        "name": "POD_ORDINAL",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
    } in mysql["env"]


@pytest.mark.parametrize(
    ("preset", "offset", "index", "content", "file"),
    [
        pytest.param("zookeeper", None, "0", "1\n", "myid", id="zookeeper-myid-is-ordinal-plus-1"),
        pytest.param("zookeeper", None, "4", "5\n", "myid", id="zookeeper-4"),
        pytest.param("kafka", None, "2", "broker.id=2\n", "broker.id", id="kafka"),
        pytest.param("kafka", "1000", "2", "broker.id=1002\n", "broker.id", id="kafka-offset"),
        pytest.param("generic", None, "7", "7\n", "server-id", id="generic"),
    ],
)
def test_presets(
    tmp_path: Path, preset: str, offset: str | None, index: str, content: str, file: str
) -> None:
    run, written = run_init(
        mutated_set(preset, offset=offset), tmp_path, pod_index=index, hostname=f"x-{index}"
    )
    assert run.returncode == 0, run.stderr
    assert written.name == file
    assert written.read_text() == content


def test_ordinals_start_keeps_the_true_ordinal(tmp_path: Path) -> None:
    """With spec.ordinals.start: 3 the pods are mysql-3..5; ids follow the real ordinal."""
    run, written = run_init(
        mutated_set("mysql", start=3), tmp_path, pod_index="3", hostname="mysql-3"
    )
    assert run.returncode == 0
    assert written.read_text() == "[mysqld]\nserver-id=103\n"


def test_no_ordinal_fails_the_pod_clearly(tmp_path: Path) -> None:
    run, written = run_init(mutated_set("generic"), tmp_path, pod_index=None, hostname="mysql")
    assert run.returncode == 1
    assert "stateful-guard: no ordinal in label or hostname 'mysql'" in run.stderr
    assert not written.exists()
