"""The leader's reconcile of managed headless Services, over an in-memory view."""

from __future__ import annotations

import datetime as dt
from typing import Any

from policies.headless_service import service_for
from tests.support import example
from webhook.reconcile import reconcile_once
from webhook.view import MemoryView

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

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
    done = reconcile_once(view, writer, grace=600, now=NOW)  # type: ignore[arg-type]
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
