"""Events that record refused deletes, evictions and scales: what they say, how repeats are
counted, that the request never waits for them, and how the audit reports them. (Which
requests leave a record is in the cases: `expect.records`.)"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client as k8s

from policies.config import Config
from tests.support import make_request, statefulset_pod
from webhook.audits.audit import Report
from webhook.audits.policyreports import policy_reports
from webhook.cluster import events
from webhook.cluster.events import EventRecorder, Record, event_body, records
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine

FORCE = {"gracePeriodSeconds": 0, "kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}


class RecordingCore:
    def __init__(self, *, expired: bool = False) -> None:
        self.expired = expired
        self.calls: list[tuple[str, str, Any, dict[str, Any]]] = []

    def create_namespaced_event(self, namespace: str, body: Any) -> None:
        self.calls.append(("create", namespace, body, {}))

    def patch_namespaced_event(self, name: str, namespace: str, body: Any, **kw: Any) -> None:
        self.calls.append(("patch", f"{namespace}/{name}", body, kw))
        if self.expired:
            raise k8s.ApiException(status=404, reason="NotFound")


def recorder(core: RecordingCore, view: MemoryView | None = None) -> EventRecorder:
    made = EventRecorder(k8s.ApiClient(), view or MemoryView(), instance="stateful-guard-abc")
    made.core = core  # type: ignore[assignment]
    return made


def refused_force_delete(**kw: Any) -> tuple[Any, Any]:
    pod = statefulset_pod("mysql-1", uid="pod-uid")
    request = make_request(
        "DELETE", old=pod, namespace="db", options=FORCE, username="bob@example.com", **kw
    )
    return request, Engine(MemoryView([pod]), Config()).validate(request)


def test_a_refused_force_delete_is_an_event_on_the_pod_naming_policy_user_and_fix() -> None:
    request, outcome = refused_force_delete()
    assert not outcome.allowed
    [record] = records(request, outcome)
    body = event_body(record, instance="stateful-guard-abc", when=1_800_000_000)
    assert body["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "mysql-1",
        "namespace": "db",
        "uid": "pod-uid",  # so `kubectl describe pod` shows it
    }
    assert body["metadata"]["namespace"] == "db"
    assert (body["reason"], body["action"], body["type"]) == ("Refused", "Delete", "Warning")
    assert body["source"] == {"component": "stateful-guard"}
    assert body["metadata"]["annotations"] == {
        "stateful-guard.io/policy": "force-delete",
        "stateful-guard.io/user": "bob@example.com",
        "stateful-guard.io/mode": "enforce",
    }
    message = body["message"]
    assert message.startswith("[force-delete] refused bob@example.com deleting Pod mysql-1: ")
    assert "\n" not in message and len(message) <= events.MESSAGE_LIMIT
    assert (body["count"], body["firstTimestamp"]) == (1, "2027-01-15T08:00:00Z")


def test_nothing_is_recorded_for_a_dry_run() -> None:
    request, outcome = refused_force_delete(dry_run=True)
    assert not outcome.allowed
    assert records(request, outcome) == []
    core = RecordingCore()
    writer = recorder(core)
    writer.submit(request, outcome)
    assert not writer._queue


def test_an_evictions_event_is_on_its_pod_with_the_pods_uid() -> None:
    pod = statefulset_pod("mysql-1", uid="pod-uid")
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "mysql-1", "namespace": "db"},
        "deleteOptions": {"gracePeriodSeconds": 0},
    }
    request = make_request("CREATE", eviction, namespace="db", sub_resource="eviction")
    view = MemoryView([pod])
    outcome = Engine(view, Config()).validate(request)
    [record] = records(request, outcome, view)
    assert (record.kind, record.name, record.uid, record.action) == (
        "Pod",
        "mysql-1",
        "pod-uid",
        "Evict",
    )


def record(**kw: Any) -> Record:
    fields: dict[str, Any] = {
        "namespace": "db",
        "api_version": "v1",
        "kind": "Pod",
        "name": "zk-1",
        "uid": "u",
        "action": "Evict",
        "reason": "Refused",
        "policy": "quorum",
        "mode": "enforce",
        "user": "system:serviceaccount:kube-system:cluster-autoscaler",
        "message": "pod db/zk-1: 2/3 members of zk ready, quorum 2; wait for zk-0",
    }
    return Record(**{**fields, **kw})


def test_repeats_within_ten_minutes_raise_the_count_of_one_event() -> None:
    """A drain retries every 5 s: one Event with a count, as client-go's recorder keeps."""
    core = RecordingCore()
    writer = recorder(core)
    assert writer.write(record(), now=1000.0) == "written"
    assert writer.write(record(), now=1005.0) == "repeated"
    assert writer.write(record(), now=1010.0) == "repeated"
    (verb, _, body, _), *patches = core.calls
    assert verb == "create"
    assert [c[0] for c in patches] == ["patch", "patch"]
    assert patches[0][1] == f"db/{body['metadata']['name']}"
    assert patches[1][2]["count"] == 3
    assert patches[1][3] == {"_content_type": "application/merge-patch+json"}
    assert writer.write(record(user="alice"), now=1011.0) == "written", "another user"
    assert writer.write(record(), now=1010.0 + events.REPEAT_WINDOW) == "written"


def test_an_expired_event_is_made_again() -> None:
    core = RecordingCore(expired=True)
    writer = recorder(core)
    writer.write(record(), now=1000.0)
    assert writer.write(record(), now=1001.0) == "written"
    assert [c[0] for c in core.calls] == ["create", "patch", "create"]


def test_the_request_never_waits_and_a_full_queue_drops_the_oldest() -> None:
    counted: list[str] = []
    core = RecordingCore()
    writer = EventRecorder(
        k8s.ApiClient(),
        MemoryView([statefulset_pod("mysql-1", uid="pod-uid")]),
        instance="x",
        count=counted.append,
    )
    writer.core = core  # type: ignore[assignment]
    request, outcome = refused_force_delete()
    for _ in range(events.QUEUE_LIMIT + 3):
        writer.submit(request, outcome)  # no loop running, no API call: only queued
    assert core.calls == []
    assert counted == ["dropped"] * 3

    async def drain() -> None:
        task = asyncio.create_task(writer.run())
        # Until every record's write has been counted (an empty queue is not enough: the
        # last one may still be being written), within 10 s even on a loaded machine.
        for _ in range(1000):
            await asyncio.sleep(0.01)
            if len(counted) == events.QUEUE_LIMIT + 3:
                break
        task.cancel()

    asyncio.run(drain())
    assert [c[0] for c in core.calls] == ["create"] + ["patch"] * (events.QUEUE_LIMIT - 1)
    assert counted.count("written") == 1 and counted.count("repeated") == events.QUEUE_LIMIT - 1


def test_recorded_attempts_are_listed_and_counted_in_the_policy_report() -> None:
    refused = event_body(record(), instance="a", when=1_800_000_000) | {"count": 4}
    would = event_body(
        record(reason="WouldRefuse", mode="warn", action="Delete", name="zk-2", user="bob"),
        instance="b",
        when=1_800_000_100,
    )
    [report] = policy_reports(Report(), attempts=[refused, would], now=1_800_000_200)
    assert report["metadata"]["namespace"] == "db"
    assert report["summary"] == {"pass": 0, "fail": 1, "warn": 1, "error": 0, "skip": 0}
    first, second = report["results"]
    assert (first["policy"], first["rule"], first["result"]) == ("quorum", "quorum/evict", "fail")
    assert first["category"] == "refused attempt"
    assert first["resources"] == [refused["involvedObject"]]
    assert first["properties"]["count"] == "4"
    assert first["properties"]["user"] == "system:serviceaccount:kube-system:cluster-autoscaler"
    assert first["timestamp"] == {"seconds": 1_800_000_000, "nanos": 0}
    assert (second["result"], second["properties"]["outcome"]) == ("warn", "would refuse")
    assert second["properties"]["mode"] == "warn"
    assert "would refuse (warn mode) bob deleting Pod zk-2" in second["message"]


def test_a_forged_review_puts_only_existing_objects_on_record() -> None:
    """Where the webhook's port takes callers other than the API server (no client-ca), a
    forged review names what it likes: only objects the view holds, with their uid, are
    put on record."""
    request, outcome = refused_force_delete()
    assert not outcome.allowed
    elsewhere = statefulset_pod("mysql-1", uid="another-uid")
    assert (
        len(records(request, outcome, MemoryView([statefulset_pod("mysql-1", uid="pod-uid")]))) == 1
    )
    assert records(request, outcome, MemoryView([elsewhere])) == [], "another pod of that name"
    assert records(request, outcome, MemoryView([statefulset_pod("mysql-0")])) == [], "none such"
