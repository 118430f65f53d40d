"""The engine: dispatch, modes applied in one place, failure modes, composition, warnings."""

from __future__ import annotations

from typing import Any

import pytest

from policies.base import Match, Policy, Result, Review
from policies.config import Config
from policies.modes import FailureMode, Mode
from tests.support import make_request, statefulset_pod
from webhook.cluster.memory import MemoryView
from webhook.engine import (
    FINDINGS_LIMIT,
    MESSAGE_LIMIT,
    PATCH_LIMIT,
    WARNINGS_TOTAL_LIMIT,
    Engine,
    one_line,
)

FORCE = {"gracePeriodSeconds": 0}
SETS = Match(group="apps", resource="statefulsets", operations=frozenset({"CREATE"}))


def force_delete(namespace: str = "db") -> Any:
    pod = statefulset_pod(namespace=namespace)
    return make_request("DELETE", old=pod, namespace=namespace, options=FORCE)


def namespace(name: str, mode: str | None) -> dict[str, Any]:
    labels = {"stateful-guard.io/mode": mode} if mode else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def a_set(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("label", "config_mode", "expected"),
    [
        pytest.param(None, None, Mode.ENFORCE, id="unlabelled-cluster-wide-enforces"),
        pytest.param("enforce", None, Mode.ENFORCE, id="label-enforce"),
        pytest.param("warn", None, Mode.WARN, id="label-caps-to-warn"),
        pytest.param("audit", None, Mode.AUDIT, id="label-caps-to-audit"),
        pytest.param("off", None, Mode.OFF, id="label-off"),
        pytest.param("enforcing", None, Mode.ENFORCE, id="label-typo-does-not-weaken"),
        pytest.param("enforce", "warn", Mode.WARN, id="policy-mode-under-enforce-label"),
        pytest.param("audit", "warn", Mode.AUDIT, id="label-caps-policy-mode"),
    ],
)
def test_effective_mode(label: str | None, config_mode: str | None, expected: Mode) -> None:
    config = Config.model_validate(
        {"policies": {"force-delete": {"mode": config_mode}}} if config_mode else {}
    )
    engine = Engine(MemoryView([namespace("db", label)]), config)
    policy = next(p for p in engine.policies if p.id == "force-delete")
    assert engine.mode_for(policy, "db") is expected


def test_namespace_override_in_config_wins_over_label() -> None:
    config = Config.model_validate(
        {"namespaces": {"db": {"mode": "enforce", "policies": {"storage-class": {"mode": "off"}}}}}
    )
    engine = Engine(MemoryView([namespace("db", "audit")]), config)
    by_id = {p.id: p for p in engine.policies}
    assert engine.mode_for(by_id["force-delete"], "db") is Mode.ENFORCE  # config cap replaces label
    assert engine.mode_for(by_id["storage-class"], "db") is Mode.OFF


@pytest.mark.parametrize(
    ("mode", "allowed", "warning", "annotation"),
    [
        ("enforce", False, None, None),
        ("warn", True, "[force-delete] would deny: pod db/mysql-1", None),
        ("audit", True, None, "would deny: pod db/mysql-1"),
        ("off", True, None, None),
    ],
)
def test_modes_turn_one_denial_into_their_effect(
    mode: str, allowed: bool, warning: str | None, annotation: str | None
) -> None:
    engine = Engine(
        MemoryView(), Config.model_validate({"policies": {"force-delete": {"mode": mode}}})
    )
    outcome = engine.validate(force_delete())
    assert outcome.allowed is allowed
    assert [w for w in outcome.warnings if warning and w.startswith(warning)] == (
        outcome.warnings if warning else []
    )
    assert len(outcome.warnings) == (1 if warning else 0)
    if annotation:
        assert outcome.audit_annotations["force-delete"].startswith(annotation)
    else:
        assert outcome.audit_annotations == {}
    decisions = [(v.policy, v.decision) for v in outcome.verdicts if v.decision != "allow"]
    expected = {"enforce": "deny", "warn": "warn", "audit": "audit"}.get(mode)
    assert decisions == ([("force-delete", expected)] if expected else [])


def test_warn_mode_mutator_changes_nothing_and_says_what_it_would_do() -> None:
    config = Config.model_validate({"policies": {"headless-service": {"mode": "warn"}}})
    request = make_request("CREATE", a_set(selector={"matchLabels": {"app": "web"}}))
    outcome = Engine(MemoryView(), config).mutate(request)
    assert outcome.patch == []
    assert outcome.warnings == [
        "[headless-service] would set spec.serviceName to web",
        "[headless-service] would create headless Service default/web once stored",
    ]


def test_mutations_compose_in_order_each_seeing_the_last() -> None:
    def first(review: Review) -> Result:
        assert review.object is not None
        review.edits.set(("spec", "serviceName"), "from-first")
        return Result.changed("set serviceName")

    seen: list[str] = []

    def second(review: Review) -> Result:
        assert review.object is not None
        seen.append(review.object["spec"]["serviceName"])
        review.edits.set(("spec", "replicas"), 3)
        return Result.changed("set replicas")

    policies = [
        Policy(id="first", rationale="", matches=(SETS,), mutate=first),
        Policy(id="second", rationale="", matches=(SETS,), mutate=second),
    ]
    request = make_request("CREATE", a_set(serviceName="", replicas=1))
    outcome = Engine(MemoryView(), policies=policies).mutate(request)
    assert seen == ["from-first"]
    assert outcome.patch == [
        {"op": "replace", "path": "/spec/serviceName", "value": "from-first"},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
    ]
    assert request.object == a_set(serviceName="", replicas=1), "the request is never edited"


def _raises(review: Review) -> Result:
    if review.object is not None:
        review.edits.set(("spec", "half"), "edited")
    raise KeyError("boom")


@pytest.mark.parametrize(
    ("failure", "allowed"), [(FailureMode.CLOSED, False), (FailureMode.OPEN, True)]
)
def test_a_raising_policy_is_decided_by_its_failure_mode(
    failure: FailureMode, allowed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    policy = Policy(
        id="fragile",
        rationale="",
        matches=(SETS,),
        mutate=_raises,
        validate=_raises,
        default_failure_mode=failure,
    )
    request = make_request("CREATE", a_set(replicas=1))
    engine = Engine(MemoryView(), policies=[policy])
    for outcome in (engine.mutate(request), engine.validate(request)):
        assert outcome.allowed is allowed
        assert outcome.patch == [], "a half-done edit is never adopted"
        text = outcome.message if not allowed else " ".join(outcome.warnings)
        assert "could not evaluate StatefulSet default/web (KeyError)" in text
        assert ("refused" if not allowed else "allowed") in text
    assert any(getattr(r, "uid", None) == request.uid for r in caplog.records)


def test_failure_modes_default_closed_for_data_loss_and_open_otherwise() -> None:
    engine = Engine(MemoryView())
    modes = {p.id: engine.config.failure_mode(p) for p in engine.policies}
    assert modes["force-delete"] is FailureMode.CLOSED
    assert modes["storage-class"] is FailureMode.OPEN
    assert modes["headless-service"] is FailureMode.OPEN


def test_warnings_are_single_lines_within_limits() -> None:
    def chatty(review: Review) -> Result:
        first = Result.warn("line one\nline two\twith tab " + "x" * 300)
        return Result.merge([first] + [Result.warn(f"warning {i} " + "y" * 100) for i in range(19)])

    policies = [
        Policy(id=f"chatty-{n}", rationale="", matches=(SETS,), validate=chatty) for n in range(5)
    ]
    outcome = Engine(MemoryView(), policies=policies).validate(make_request("CREATE", a_set()))
    assert all(len(w) <= 120 and "\n" not in w and "\t" not in w for w in outcome.warnings)
    assert outcome.warnings[0].startswith("[chatty-0] line one line two with tab x")
    assert sum(len(w) for w in outcome.warnings[:-1]) <= WARNINGS_TOTAL_LIMIT
    assert outcome.warnings[-1].startswith("[stateful-guard] ")
    assert "more warnings omitted" in outcome.warnings[-1]


def test_one_policy_says_at_most_its_findings_limit_and_a_denial_stays_one() -> None:
    def flood(review: Review) -> Result:
        return Result.merge(
            [Result.deny(f"secret {i} " + "z" * 500, short=f"secret {i}") for i in range(5000)]
        )

    policy = Policy(id="flood", rationale="", matches=(SETS,), validate=flood)
    outcome = Engine(MemoryView(), policies=[policy]).validate(make_request("CREATE", a_set()))
    assert outcome.allowed is False
    assert outcome.message.startswith("[flood] secret 0 ") and outcome.message.endswith(
        "(cut; see the logs)"
    )
    assert len(outcome.message) <= MESSAGE_LIMIT
    [verdict] = outcome.verdicts
    assert len(verdict.refusals) == FINDINGS_LIMIT + 1
    assert verdict.refusals[-1] == "[flood] and 4980 more findings like these."


def test_a_mutation_past_the_patch_limit_is_not_adopted() -> None:
    def sprawl(review: Review) -> Result:
        for i in range(PATCH_LIMIT + 1):
            review.edits.set(("metadata", "labels", f"l{i}"), "x")
        return Result.changed("label everything")

    policy = Policy(id="sprawl", rationale="", matches=(SETS,), mutate=sprawl)
    outcome = Engine(MemoryView(), policies=[policy]).mutate(make_request("CREATE", a_set()))
    assert outcome.allowed is True and outcome.patch == []
    assert any("over the limit; allowed (fail open)" in w for w in outcome.warnings), (
        outcome.warnings
    )


def test_one_line() -> None:
    assert one_line("a\r\nb") == "a b"
    assert one_line("z" * 200) == "z" * 117 + "..."


def test_only_matching_policies_run() -> None:
    engine = Engine(MemoryView())
    assert [p.id for p in engine.policies_for("validate", force_delete())] == [
        "force-delete",
        "quorum",
    ]
    scale = make_request("UPDATE", a_set(), old=a_set(), sub_resource="scale")
    assert engine.policies_for("mutate", scale) == ()
    create = make_request("CREATE", a_set())
    assert [p.id for p in engine.policies_for("mutate", create)] == [
        "headless-service",
        "storage-class",
        "server-id",
    ]
    assert [p.id for p in engine.policies_for("validate", scale)] == [
        "pvc-protection",
        "quorum",
        "shared-volume",
    ]


def test_admit_validates_the_mutated_object() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.0.0.9", "selector": {"a": "b"}},
    }
    request = make_request("CREATE", a_set(template={"metadata": {"labels": {"a": "b"}}}))
    outcome = Engine(MemoryView([service])).admit(request)
    assert outcome.allowed, "a non-headless governing Service is a warning, never a refusal"
    assert any(
        w.startswith("[headless-service] StatefulSet default/web: Service default/web is not")
        for w in outcome.warnings
    ), "the serviceName set by the mutation is what validation judged"


def test_enforce_mode_warnings_and_changes_are_in_the_verdict_for_logs_and_metrics() -> None:
    scratch = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "scratch"},
        "reclaimPolicy": "Delete",
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "c"},
        "spec": {"storageClassName": "scratch"},
    }
    outcome = Engine(MemoryView([scratch])).validate(make_request("CREATE", claim))
    [verdict] = outcome.verdicts
    assert (verdict.policy, verdict.decision) == ("storage-class", "warn")
    assert list(verdict.messages) == outcome.warnings and len(outcome.warnings) == 2


def test_one_line_removes_unprintable_characters() -> None:
    assert one_line("db/\U00018cd6x\u200bz\x7f") == "db/ x z"
