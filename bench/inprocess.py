"""Measurements inside one process: engine time per request, cache memory per object, and
offline audit throughput."""

from __future__ import annotations

import copy
import gc
import time
import tracemalloc
from typing import Any

import orjson
import yaml
from kubernetes import client as k8s

from bench.bodies import big_statefulset, create_body, delete_body, managed_fields
from tests.support import EXAMPLES, load_yaml
from webhook import collector
from webhook.audits.audit import judge, manifest_subjects
from webhook.cluster.live import LiveView
from webhook.cluster.manifests import parse
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine
from webhook.serving.admission import encode_answer, parse_review


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def engine_time(runs: int = 5000) -> dict[str, dict[str, float]]:
    """Parse, judge and encode, per body, as /mutate and /validate do (milliseconds)."""
    engine = Engine(MemoryView(load_yaml(EXAMPLES / "cluster.yaml")))
    cases = {
        "statefulset-create /mutate": (create_body(), engine.mutate),
        "statefulset-create /validate": (create_body(), engine.validate),
        "pod-delete /validate": (delete_body(), engine.validate),
    }
    collector.settle()  # as the server does
    results = {}
    for name, (body, run) in cases.items():
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            review = parse_review(body)
            outcome = run(review.request)
            encode_answer(review.request.uid, outcome)
            times.append((time.perf_counter() - started) * 1000)
        times = times[runs // 10 :]  # warm-up
        results[name] = {
            "p50_ms": percentile(times, 0.5),
            "p99_ms": percentile(times, 0.99),
            "bytes": len(body),
        }
    return results


def claim(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "resourceVersion": "123456",
            "creationTimestamp": "2026-11-22T01:00:00Z",
            "labels": {"app": "mysql", "app.kubernetes.io/instance": "orders"},
            "annotations": {
                "pv.kubernetes.io/bind-completed": "yes",
                "volume.kubernetes.io/storage-provisioner": "ebs",
            },
            "finalizers": ["kubernetes.io/pvc-protection"],
            "managedFields": managed_fields("kube-controller-manager", 20),
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "standard",
            "volumeName": f"pvc-{name}",
            "resources": {"requests": {"storage": "10Gi"}},
        },
        "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}},
    }


def cache_memory(count: int = 10_000) -> dict[str, float]:
    """Bytes the live view's cache holds per object, for `count` sets and `count` claims,
    filled the way a list from the API server fills it."""
    template = big_statefulset()
    sets, claims = [], []
    for i in range(count):
        obj = copy.deepcopy(template)
        obj["metadata"].update(name=f"db-{i}", namespace=f"team-{i % 100}", uid=f"uid-{i}")
        sets.append(obj)
        claims.append(claim(f"data-db-{i}-0", f"team-{i % 100}"))
    view = LiveView(k8s.ApiClient())
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    view.load("StatefulSet", sets)
    view.load("PersistentVolumeClaim", claims)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert view.get("StatefulSet", "team-1", "db-1") is not None
    total = after - before
    return {
        "objects": 2 * count,
        "bytes_per_object": total / (2 * count),
        "total_mib": total / 2**20,
    }


def audit_throughput(count: int = 10_000) -> dict[str, float]:
    """Objects per second for `stateful-guard audit -f` over `count` objects (sets and claims),
    from YAML and from JSON (`kubectl get -o json`): parse and judge, and judge alone."""
    cluster = load_yaml(EXAMPLES / "cluster.yaml")
    template = big_statefulset()
    del template["metadata"]["managedFields"]
    docs = []
    for i in range(count // 2):
        obj = copy.deepcopy(template)
        obj["metadata"].update(name=f"db-{i}", namespace=f"team-{i % 50}")
        docs.append(obj)
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"scratch-{i}", "namespace": f"team-{i % 50}"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        )
    results: dict[str, float] = {"objects": count}
    for fmt, text in (
        ("yaml", yaml.safe_dump_all(docs)),
        ("json", orjson.dumps({"apiVersion": "v1", "kind": "List", "items": docs}).decode()),
    ):
        total, judging = _audit_once(text, fmt, cluster, count)
        gc.collect()  # what that audit left is freed here, not in the next one's time
        results[f"{fmt}_objects_per_second"] = count / total
        results[f"{fmt}_judge_objects_per_second"] = count / judging
    return results


def _audit_once(text: str, fmt: str, cluster: list[Any], count: int) -> tuple[float, float]:
    """Seconds for `stateful-guard audit -f` of `text`: in all, and judging alone."""
    started = time.perf_counter()
    with collector.paused():  # as `stateful-guard audit` does
        manifests = parse(text, source=f"bench.{fmt}")
    collector.settle(collect=False)
    parsed = time.perf_counter()
    engine = Engine(MemoryView([*(m.object for m in manifests), *cluster]))
    report = judge(engine, manifest_subjects(manifests))
    done = time.perf_counter()
    assert len(report.judged) == count
    gc.unfreeze()  # let the next audit's objects be the only frozen ones
    return done - started, done - parsed


if __name__ == "__main__":
    print(engine_time(2000))
    print(cache_memory(2000))
    print(audit_throughput(2000))
