"""The leader's reconcile of managed headless Services and quorum PodDisruptionBudgets, over
an in-memory view: Services created from stored, marked sets only, where the mutating webhook
reaches, older unowned ones tended; budgets kept in step with quorum sets, never over a
user's."""

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
        self.created: list[dict[str, Any]] = []

    def create(self, obj: dict[str, Any], owner: dict[str, Any]) -> str:
        meta = obj["metadata"]
        self.calls.append(
            ("create", f"{meta.get('namespace', '?')}/{meta['name']}<-{owner['metadata']['uid']}")
        )
        self.created.append(obj)
        return "created"

    def replace_budget_spec(self, budget: dict[str, Any], new_spec: dict[str, Any]) -> None:
        self.calls.append(("replace", f"{budget['metadata']['name']}: {new_spec}"))

    def adopt(self, service: dict[str, Any], stateful_set: dict[str, Any]) -> None:
        self.calls.append(
            ("adopt", f"{service['metadata']['name']}<-{stateful_set['metadata']['uid']}")
        )

    def delete(self, kind: str, obj: dict[str, Any]) -> None:
        self.calls.append(
            ("delete", obj["metadata"]["name"] + ("" if kind == "Service" else "/pdb"))
        )


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


def quorum_set(
    name: str,
    *,
    replicas: int = 3,
    quorum: str | None = "majority",
    seconds_old: int = 60,
    image: str = "example/app:1",
) -> dict[str, Any]:
    stateful_set = a_set(name, f"uid-{name}")
    created = NOW - dt.timedelta(seconds=seconds_old)
    stateful_set["metadata"].update(
        creationTimestamp=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        annotations={"stateful-guard.io/quorum": quorum} if quorum else {},
    )
    stateful_set["spec"] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name, "tier": "data"}},
            "spec": {"containers": [{"name": "app", "image": image}]},
        },
    }
    return stateful_set


def budget(name: str, app: str, *, ours: bool, max_unavailable: int = 1) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "db", "uid": f"pdb-{name}"}
    if ours:
        meta["labels"] = {"app.kubernetes.io/managed-by": "stateful-guard"}
        meta["annotations"] = {"stateful-guard.io/statefulset": app}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "maxUnavailable": max_unavailable,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def budgets_pass(objects: list[dict[str, Any]], *, wanted: bool = True) -> Recorder:
    view = MemoryView([namespace("db"), *objects])
    writer = Recorder()
    reconcile_once(
        view, writer, grace=600, delay=10, guarded=lambda _: False,
        budgets=lambda _: wanted, now=NOW,
    )  # fmt: skip
    return writer


def test_a_quorum_set_gets_a_budget_of_what_its_quorum_can_spare() -> None:
    writer = budgets_pass(
        [
            quorum_set("zk"),
            quorum_set("ensemble", replicas=5, quorum=None, image="zookeeper:3.9"),  # by image
            quorum_set("young", seconds_old=2),  # not yet: a budget of its own may follow
            quorum_set("cache", quorum="none"),
            quorum_set("plain", quorum=None),  # no quorum to keep
            quorum_set("pair", replicas=2),  # a majority of 2 is both: nothing to spare
            quorum_set("all", quorum="3"),  # all 3 required: none to spare, no budget
        ]
    )
    made = {b["metadata"]["name"]: b for b in writer.created}
    assert sorted(made) == ["ensemble-quorum", "zk-quorum"]
    assert made["zk-quorum"]["spec"] == {
        "selector": {"matchLabels": {"app": "zk"}},
        "maxUnavailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    assert made["ensemble-quorum"]["spec"]["maxUnavailable"] == 2, "5 members: 3 needed"
    assert made["zk-quorum"]["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "stateful-guard"
    }
    assert ("create", "?/zk-quorum<-uid-zk") in writer.calls, "owned by the set it serves"


def test_never_over_a_users_budget_and_ours_goes_when_one_appears() -> None:
    users = budget("zk-pdb", "zk", ours=False)
    assert budgets_pass([quorum_set("zk"), users]).calls == []
    # ours first, then the user adds one: two budgets make every eviction fail, ours goes
    writer = budgets_pass([quorum_set("zk"), budget("zk-quorum", "zk", ours=True), users])
    assert writer.calls == [("delete", "zk-quorum/pdb")]


def test_a_budget_follows_its_sets_replicas_and_goes_when_not_wanted() -> None:
    ours = budget("zk-quorum", "zk", ours=True)
    assert budgets_pass([quorum_set("zk"), ours]).calls == [], "in step: nothing to do"
    writer = budgets_pass([quorum_set("zk", replicas=5), ours])
    assert writer.calls == [
        (
            "replace",
            "zk-quorum: {'selector': {'matchLabels': {'app': 'zk'}}, 'maxUnavailable': 2, "
            "'unhealthyPodEvictionPolicy': 'AlwaysAllow'}",
        )
    ]
    assert budgets_pass([quorum_set("zk", quorum="none"), ours]).calls == [
        ("delete", "zk-quorum/pdb")
    ]
    assert budgets_pass([quorum_set("zk"), ours], wanted=False).calls == [
        ("delete", "zk-quorum/pdb")
    ], "turned off, or quorum no longer enforced there"


def test_budgets_are_left_alone_when_the_webhook_configuration_cannot_be_read() -> None:
    view = MemoryView([namespace("db"), quorum_set("zk"), budget("zk-quorum", "zk", ours=True)])
    writer = Recorder()
    reconcile_once(view, writer, grace=600, delay=0, guarded=lambda _: False, budgets=None, now=NOW)
    assert writer.calls == []
