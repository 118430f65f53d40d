"""GuardExceptions outside single requests (those are cases in tests/cases/*/exception-*):
what an exception object means, that the offline audit honours it as the webhook does and
lists it, the command that writes one, and the CRD's schema against what that command writes.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from policies import exceptions
from policies.config import Config
from tests.support import ROOT, load_yaml, make_request, stateful_guard
from webhook.audits.audit import judge, manifest_subjects
from webhook.audits.outputs import render
from webhook.audits.policyreports import policy_reports
from webhook.cluster.events import Record, event_body
from webhook.cluster.manifests import parse
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine

NOW = dt.datetime(2026, 12, 6, 9, 30, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)
CRD = ROOT / "deploy" / "base" / "guardexceptions.yaml"


def exception(**spec: Any) -> dict[str, Any]:
    body = {
        "policies": ["shared-volume"],
        "match": {"kinds": ["Deployment"], "names": ["uploads"]},
        "reason": "one replica at a time until the move to RWX, CHG-12",
        "expiresAt": "2026-12-06T18:00:00Z",
        **spec,
    }
    return {
        "apiVersion": "stateful-guard.io/v1alpha1",
        "kind": "GuardException",
        "metadata": {
            "name": "uploads-shared",
            "namespace": "web",
            "creationTimestamp": "2026-12-06T09:00:00Z",
        },
        "spec": body,
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("30m", 1800), ("1h30m", 5400), ("7d", 604800), ("2d12h", 216000)],
)
def test_durations_read_and_shown(text: str, seconds: int) -> None:
    delta = exceptions.parse_duration(text)
    assert delta.total_seconds() == seconds
    assert exceptions.parse_duration(exceptions.shown_duration(delta)) == delta


@pytest.mark.parametrize("text", ["", "0s", "1w", "-1h", "1h 30m", "h", "1.5h", "٣h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        exceptions.parse_duration(text)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"reason": " "}, id="blank-reason"),
        pytest.param({"expiresAt": "tomorrow"}, id="unreadable-expiry"),
        pytest.param({"expiresAt": None}, id="no-expiry"),
        pytest.param({"notBefore": "soon"}, id="unreadable-start"),
        pytest.param({"policies": "shared-volume"}, id="policies-not-a-list"),
        pytest.param({"match": ["uploads"]}, id="match-not-a-mapping"),
    ],
)
def test_a_malformed_exception_covers_nothing(spec: dict[str, Any]) -> None:
    """The CRD refuses these; manifests given to an audit may hold anything."""
    assert exceptions.parse(exception(**spec)) is None


def test_in_force_from_not_before_until_the_first_of_expiry_and_the_longest_duration() -> None:
    parsed = exceptions.parse(exception(notBefore="2026-12-06T09:15:00Z"))
    assert parsed is not None
    assert not parsed.in_force(NOW - dt.timedelta(minutes=16), WEEK)
    assert parsed.in_force(NOW, WEEK)
    end = dt.datetime(2026, 12, 6, 18, tzinfo=dt.UTC)
    assert parsed.in_force(end - dt.timedelta(seconds=1), WEEK)
    assert not parsed.in_force(end, WEEK), "over from the second it expires"
    assert not parsed.in_force(NOW, dt.timedelta(minutes=20)), "capped at creation + longest"


def test_a_selector_and_names_must_both_match() -> None:
    parsed = exceptions.parse(
        exception(match={"names": ["uploads"], "selector": {"matchLabels": {"tier": "web"}}})
    )
    assert parsed is not None
    web = exceptions.Target("Deployment", "uploads", {"tier": "web"})
    other = exceptions.Target("Deployment", "uploads", {"tier": "batch"})
    assert parsed.covers("shared-volume", web, "anyone", [])
    assert not parsed.covers("shared-volume", other, "anyone", [])
    assert not parsed.covers("force-delete", web, "anyone", [])


SHARING = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: uploads, namespace: web}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: uploads, namespace: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: uploads}}
  template:
    metadata: {labels: {app: uploads}}
    spec:
      containers: [{name: app, image: "nginx:1.27"}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: uploads}}]
"""


def offline_audit(*extra: dict[str, Any], now: dt.datetime = NOW):  # type: ignore[no-untyped-def]
    manifests = parse(SHARING, source="app.yaml")
    view = MemoryView([*(m.object for m in manifests), *extra])
    return judge(Engine(view, Config(), clock=lambda: now), manifest_subjects(manifests))


def test_the_offline_audit_honours_an_exception_as_the_webhook_does() -> None:
    refused = offline_audit()
    assert refused.failed
    report = offline_audit(exception())
    assert not report.failed
    [judged] = [j for j in report.judged if j.subject.kind == "Deployment"]
    [finding] = [f for f in judged.findings if f.policy == "shared-volume"]
    assert finding.outcome == "excepted"
    assert "allowed by GuardException uploads-shared until 2026-12-06T18:00:00Z" in finding.message
    # the webhook's answer for the same object, from the same engine
    deployment = next(
        m.object for m in parse(SHARING, source="app.yaml") if m.object["kind"] == "Deployment"
    )
    view = MemoryView([*(m.object for m in parse(SHARING, source="app.yaml")), exception()])
    answer = Engine(view, Config(), clock=lambda: NOW).admit(
        make_request("CREATE", deployment, namespace="web")
    )
    assert answer.allowed and any("uploads-shared" in w for w in answer.warnings)
    assert offline_audit(exception(), now=NOW + dt.timedelta(hours=9)).failed, "expired"


def test_the_audit_lists_exceptions_in_force_and_flags_those_ending_within_a_day() -> None:
    later = exception(expiresAt="2026-12-09T09:00:00Z")
    later["metadata"]["name"] = "uploads-later"
    over = exception(expiresAt="2026-12-06T09:00:00Z")
    over["metadata"]["name"] = "uploads-over"
    report = offline_audit(exception(), later, over)
    assert [(e.name, e.ending_soon) for e in report.exceptions] == [
        ("uploads-shared", True),
        ("uploads-later", False),
    ]
    table = render(report, "table")
    assert "2 GuardExceptions in force (1 ending within a day):" in table
    assert "web/uploads-shared" in table and "2026-12-06T18:00:00Z (within a day)" in table
    assert "uploads-over" not in table
    listed = json.loads(render(report, "json"))["exceptions"]
    assert listed[0]["endingWithinADay"] is True and listed[1]["ends"] == "2026-12-09T09:00:00Z"
    assert listed[0]["who"] == "anyone" and listed[0]["objects"] == "Deployment uploads"


def test_an_exceptions_use_is_an_event_and_a_skip_in_the_policy_report() -> None:
    record = Record(
        namespace="db",
        api_version="v1",
        kind="Pod",
        name="mysql-1",
        uid="u1",
        action="Delete",
        reason="Excepted",
        policy="force-delete",
        mode="enforce",
        user="oncall@example.com",
        message="pod db/mysql-1 of StatefulSet mysql with grace period 0",
        exception="db/fd-mysql-1",
    )
    body = event_body(record, instance="a", when=1_800_000_000)
    assert body["reason"] == "Excepted"
    assert body["metadata"]["annotations"]["stateful-guard.io/exception"] == "db/fd-mysql-1"
    assert (
        "allowed, by GuardException db/fd-mysql-1, oncall@example.com deleting Pod mysql-1"
        in (body["message"])
    )
    [report] = policy_reports(judge(Engine(MemoryView()), []), attempts=[body])
    [result] = report["results"]
    assert (result["result"], result["category"]) == ("skip", "exception used")
    assert result["properties"]["exception"] == "db/fd-mysql-1"
    assert report["summary"]["skip"] == 1


def crd_schema() -> dict[str, Any]:
    [crd] = [d for d in load_yaml(CRD) if d["kind"] == "CustomResourceDefinition"]
    [version] = crd["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


def test_exception_create_prints_an_object_the_crd_accepts_and_the_engine_honours() -> None:
    run = stateful_guard(
        "exception", "create", "--policy", "force-delete", "--pod", "db/mysql-1",
        "--for", "1h", "--reason", "node-1 lost, INC-4411", "--group", "sre",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    obj = yaml.safe_load(run.stdout)
    jsonschema.validate(obj, crd_schema())
    parsed = exceptions.parse(obj)
    assert parsed is not None and parsed.reason == "node-1 lost, INC-4411"
    assert parsed.covers("force-delete", exceptions.Target("Pod", "mysql-1", {}), "x", ["sre"])
    assert not parsed.covers("force-delete", exceptions.Target("Pod", "mysql-0", {}), "x", ["sre"])
    lasting = parsed.expires_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=59) < lasting <= dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        pytest.param(["--pod", "db/a", "--for", "8d"], "longer than the 7d", id="too-long"),
        pytest.param(["--pod", "db/a", "--for", "soon"], "--for: expected a duration", id="when"),
        pytest.param(["--pod", "db/a", "--claim", "db/b", "--for", "1h"], "one kind", id="kind"),
        pytest.param(["--pod", "db/a", "--pod", "ops/b", "--for", "1h"], "one namespace", id="ns"),
        pytest.param(["--pod", "mysql-1", "--for", "1h"], "NAMESPACE/NAME", id="no-namespace"),
        pytest.param(["--for", "1h"], "name the objects", id="no-objects"),
        pytest.param(["--pod", "db/A_b", "--for", "1h"], "not a Kubernetes object name", id="name"),
    ],
)  # fmt: skip
def test_exception_create_refuses_what_would_not_work(args: list[str], said: str) -> None:
    run = stateful_guard(
        "exception", "create", "--policy", "force-delete", "--reason", "why", *args
    )
    assert run.returncode == 2, run.stdout
    assert said in run.stderr and "Traceback" not in run.stderr


def test_the_crd_lists_every_policy_an_exception_can_name(tmp_path: Path) -> None:
    from policies.registry import POLICIES

    schema = crd_schema()
    enum = schema["properties"]["spec"]["properties"]["policies"]["items"]["enum"]
    assert sorted(enum) == sorted(p.id for p in POLICIES if p.exceptable)
    kinds = schema["properties"]["spec"]["properties"]["match"]["properties"]["kinds"]
    assert sorted(kinds["items"]["enum"]) == sorted(exceptions.TARGET_KINDS.values())
    chart = ROOT / "deploy" / "chart" / "templates" / "guardexceptions.yaml"
    assert chart.read_text() == CRD.read_text(), "the chart ships the same CRD and roles"
