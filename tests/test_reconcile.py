"""The leader's reconcile of managed headless Services, over an in-memory view: created from
stored, marked sets only, where the mutating webhook reaches; older unowned ones tended."""

from __future__ import annotations

import datetime as dt
from typing import Any

from policies.headless_service import service_for
from tests.support import example
from webhook.cluster.memory import MemoryView
from webhook.cluster.reconcile import guarded_namespaces, reconcile_once

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def create(self, service: dict[str, Any], owner: dict[str, Any]) -> str:
        meta = service["metadata"]
        self.calls.append(
            ("create", f"{meta['namespace']}/{meta['name']}<-{owner['metadata']['uid']}")
        )
        return "created"

    def adopt(self, service: dict[str, Any], stateful_set: dict[str, Any]) -> None:
        self.calls.append(
            ("adopt", f"{service['metadata']['name']}<-{stateful_set['metadata']['uid']}")
        )

    def delete(self, service: dict[str, Any]) -> None:
        self.calls.append(("delete", service["metadata"]["name"]))


def managed(
    name: str, set_name: str, *, minutes_old: int, owner_uid: str | None = None
) -> dict[str, Any]:
    statefulset = example("mysql-replicated.yaml", "StatefulSet")
    statefulset["metadata"]["name"] = set_name
    service = service_for(statefulset, name, "db")
    created = NOW - dt.timedelta(minutes=minutes_old)
    service["metadata"]["creationTimestamp"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    service["metadata"]["uid"] = f"svc-{name}"
    if owner_uid:
        service["metadata"]["ownerReferences"] = [{"kind": "StatefulSet", "uid": owner_uid}]
    return service


def a_set(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "db", "uid": uid},
        "spec": {},
    }


def test_reconcile() -> None:
    unmanaged = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "old", "namespace": "db", "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"clusterIP": "None"},
    }
    view = MemoryView(
        [
            managed("mysql", "mysql", minutes_old=1),  # its set now exists: adopt
            a_set("mysql", "uid-mysql"),
            managed("kafka", "kafka", minutes_old=60, owner_uid="uid-kafka"),  # adopted already
            a_set("kafka", "uid-kafka"),
            managed("zk", "zk", minutes_old=11),  # set never appeared, past the grace: delete
            managed("redis", "redis", minutes_old=2),  # set not there yet, within the grace: wait
            unmanaged,  # not ours: never touched
        ]
    )
    writer = Recorder()
    done = reconcile_once(view, writer, grace=600, delay=10, guarded=lambda _: True, now=NOW)
    assert writer.calls == [("adopt", "mysql<-uid-mysql"), ("delete", "zk")]
    assert done == [
        "adopted Service db/mysql by StatefulSet mysql",
        "deleted Service db/zk: StatefulSet zk never appeared",
    ]


def test_managed_service_shape() -> None:
    service = service_for(example("mysql-replicated.yaml", "StatefulSet"), "mysql", "db")
    assert service["spec"] == {
        "clusterIP": "None",
        "selector": {"app": "mysql"},
        "publishNotReadyAddresses": True,
        "ports": [{"name": "mysql", "port": 3306, "targetPort": "mysql", "protocol": "TCP"}],
    }
    assert service["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "stateful-guard"}
    assert service["metadata"]["annotations"] == {"stateful-guard.io/statefulset": "mysql"}


def marked(name: str, namespace: str, *, seconds_old: int, mark: str = "true") -> dict[str, Any]:
    stateful_set = example("mysql-replicated.yaml", "StatefulSet")
    created = NOW - dt.timedelta(seconds=seconds_old)
    stateful_set["metadata"] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{namespace}-{name}",
        "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "annotations": {"stateful-guard.io/managed-service": mark},
    }
    stateful_set["spec"]["serviceName"] = name
    return stateful_set


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {}},
    }


OPT_IN = {
    "matchExpressions": [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["kube-system", "stateful-guard"],
        },
        {"key": "stateful-guard.io/mode", "operator": "Exists"},
    ]
}


def test_services_are_made_from_stored_marked_sets_where_the_webhook_reaches() -> None:
    view = MemoryView(
        [
            namespace("db", {"stateful-guard.io/mode": "enforce"}),
            namespace("warned", {"stateful-guard.io/mode": "warn"}),
            namespace("plain"),
            marked("mysql", "db", seconds_old=60),  # made: marked, stored, old enough
            marked("young", "db", seconds_old=2),  # not yet: its own Service may follow
            marked("unmarked", "db", seconds_old=60, mark="false"),
            marked("elsewhere", "plain", seconds_old=60),  # the opt-in selector misses it
            marked("sys", "kube-system", seconds_old=60),
            marked("watched", "warned", seconds_old=60),  # headless-service only warns there
            marked("has", "db", seconds_old=60),
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "has", "namespace": "db"}},
        ]
    )
    guarded = guarded_namespaces(
        view,
        OPT_IN,
        enforced=lambda ns: view.namespace_labels(ns).get("stateful-guard.io/mode") != "warn",
        own_namespace="stateful-guard",
    )
    writer = Recorder()
    done = reconcile_once(view, writer, grace=600, delay=10, guarded=guarded, now=NOW)
    assert writer.calls == [("create", "db/mysql<-uid-db-mysql")]
    assert done == ["created Service db/mysql for StatefulSet mysql"]


def test_no_services_where_the_webhook_configuration_cannot_be_read() -> None:
    view = MemoryView([namespace("db"), marked("mysql", "db", seconds_old=60)])
    guarded = guarded_namespaces(view, None, enforced=lambda _: True, own_namespace="x")
    writer = Recorder()
    assert reconcile_once(view, writer, grace=600, delay=0, guarded=guarded, now=NOW) == []
