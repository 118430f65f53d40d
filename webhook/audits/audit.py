"""Audits: the webhook's own engine over objects that exist, or are about to.

Each object is judged as a synthetic CREATE (dry run, so nothing is created) through mutate
and then validate, exactly as the API server would call us: offline audits of manifests and
live audits of a cluster differ only in where the objects come from (Kyverno's background
scan and Gatekeeper's audit do the same).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from policies import exceptions
from policies.edits import Op
from policies.request import AdmissionRequest
from policies.view import ClusterView
from webhook.cluster.manifests import Manifest
from webhook.engine import Engine, Verdict

# The kinds the policies judge at creation: (group, version, resource).
AUDITED = {
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "PersistentVolumeClaim": ("", "v1", "persistentvolumeclaims"),
    "Deployment": ("apps", "v1", "deployments"),
    "ReplicaSet": ("apps", "v1", "replicasets"),
}
AUDIT_USER = "stateful-guard:audit"
# Findings about the object itself, not a policy: what the API server would refuse to store.
MANIFEST = "manifest"
MANIFEST_RATIONALE = "An object the API server would refuse cannot be installed at all."

# excepted: a refusal a GuardException in force waived (`policies.exceptions`); error: a
# file that could not be read (the audit goes on, and exits 2)
Outcome = Literal["fail", "warn", "change", "audit", "skip", "excepted", "error"]


@dataclass(frozen=True)
class Subject:
    """The object a finding is about, and where it was read."""

    api_version: str
    kind: str
    namespace: str
    name: str
    source: str = ""  # file, or "cluster"
    index: int = 0
    line: int = 1
    uid: str = ""
    item: int = 0  # its place in a List document (1-based), 0 for none

    @property
    def where(self) -> str:
        """`file:line` (and the List item), as a person looks it up."""
        if not self.source:
            return ""
        return f"{self.source}:{self.line}" + (f" item {self.item}" if self.item else "")

    def __str__(self) -> str:
        if not self.kind:
            return "-"  # a file that could not be read
        return (
            f"{self.kind} {self.namespace}/{self.name}"
            if self.namespace
            else (f"{self.kind} {self.name}")
        )


@dataclass(frozen=True)
class Finding:
    policy: str
    mode: str
    outcome: Outcome  # fail: an enforce-mode refusal, the only kind that fails an audit
    message: str


@dataclass
class Judged:
    subject: Subject
    policies: list[str]  # every policy that judged it (those without findings passed)
    findings: list[Finding]
    patch: list[Op]

    @property
    def failed(self) -> bool:
        return any(f.outcome == "fail" for f in self.findings)


SOON = dt.timedelta(days=1)  # exceptions ending within this are flagged


@dataclass(frozen=True)
class ExceptionInForce:
    """A GuardException in force when the audit ran: what a reviewer looks at."""

    namespace: str
    name: str
    policies: tuple[str, ...]
    objects: str  # what it matches, as people write it
    who: str  # who may act under it
    reason: str
    approved_by: str
    ends: dt.datetime
    ending_soon: bool  # within a day

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def exceptions_in_force(
    view: ClusterView, *, now: dt.datetime, longest: dt.timedelta
) -> list[ExceptionInForce]:
    """The exceptions the view holds that are in force now, soonest-ending first."""
    listed = []
    for e in exceptions.in_namespace(view):
        if not e.in_force(now, longest):
            continue
        kinds = ",".join(sorted(e.kinds)) or "any kind"
        matched = [", ".join(sorted(e.names))] if e.names is not None else []
        if e.selector is not None:
            matched.append(f"selector {e.selector}")
        who = sorted(e.users) + [f"group {g}" for g in sorted(e.groups)]
        ends = e.ends(longest)
        listed.append(
            ExceptionInForce(
                namespace=e.namespace,
                name=e.name,
                policies=tuple(sorted(e.policies)),
                objects=f"{kinds} {' and '.join(matched)}",
                who=", ".join(who) or "anyone",
                reason=e.reason,
                approved_by=e.approved_by,
                ends=ends,
                ending_soon=ends - now <= SOON,
            )
        )
    return sorted(listed, key=lambda x: (x.ends, x.ref))


@dataclass
class Report:
    judged: list[Judged] = field(default_factory=list)
    exceptions: list[ExceptionInForce] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(j.failed for j in self.judged)

    @property
    def unreadable(self) -> bool:
        return any(f.outcome == "error" for j in self.judged for f in j.findings)

    def add_unreadable(self, source: str, line: int, message: str) -> None:
        """A file the audit could not read, as a finding: the others are still judged."""
        subject = Subject("", "", "", "", source=source, line=line)
        said = re.sub(r"^:\d+(:\d+)?: ", "", message.removeprefix(source))  # where says it
        finding = Finding(MANIFEST, "", "error", said)
        self.judged.append(Judged(subject, [MANIFEST], [finding], []))

    def summary(self) -> dict[str, int]:
        counts = {
            "objects": len(self.judged),
            "fail": 0,
            "warn": 0,
            "change": 0,
            "audit": 0,
            "skip": 0,
            "excepted": 0,
            "error": 0,
            "pass": 0,
        }
        for judged in self.judged:
            for finding in judged.findings:
                counts[finding.outcome] += 1
            flagged = {f.policy for f in judged.findings}
            counts["pass"] += sum(1 for p in judged.policies if p not in flagged)
        return counts


def findings_of(verdict: Verdict) -> list[Finding]:
    """A verdict in audit terms: what it refused, warned of, changed, or recorded."""
    mode = verdict.mode.value
    groups: list[tuple[Outcome, tuple[str, ...]]] = [
        ("fail", verdict.refusals),
        ("warn", verdict.warnings),
        ("change", verdict.changes),
        ("audit", verdict.audits),
    ]
    if verdict.decision == "skip":
        groups = [("skip", verdict.warnings)]
    elif verdict.excepted:  # the exception's line is the last warning; the others stand
        groups = [("warn", verdict.warnings[:-1]), ("excepted", verdict.warnings[-1:])]
    elif verdict.mode.value != "enforce":
        groups = [g for g in groups if g[0] != "change"]  # warn/audit lines already say "would"
    return [
        Finding(verdict.policy, mode, outcome, _plain(verdict.policy, message))
        for outcome, messages in groups
        for message in messages
    ]


def _plain(policy: str, message: str) -> str:
    prefix = f"[{policy}] "
    return message[len(prefix) :] if message.startswith(prefix) else message


def subject_of(
    obj: dict[str, Any],
    *,
    default_namespace: str = "default",
    source: str = "",
    index: int = 0,
    line: int = 1,
    item: int = 0,
) -> Subject:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return Subject(
        api_version=str(obj.get("apiVersion", "")),
        kind=str(obj.get("kind", "")),
        namespace=str(meta.get("namespace") or default_namespace),
        name=str(meta.get("name") or meta.get("generateName") or "?"),
        source=source,
        index=index,
        line=line,
        uid=str(meta.get("uid") or ""),
        item=item,
    )


def malformed(obj: dict[str, Any]) -> str | None:
    """Why the API server would refuse this object's shape, or None: policies then judge a
    well-formed object (they read defensively beyond that, and an error in one becomes an
    undecided finding, never a traceback)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return f"metadata must be a mapping, got {_shown(meta)}"
    name = meta.get("name") or meta.get("generateName")
    if not isinstance(name, str) or not name:
        return f"metadata.name must be a non-empty string, got {_shown(meta.get('name'))}"
    for key in ("labels", "annotations"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            return f"metadata.{key} must be a mapping, got {_shown(meta[key])}"
    if "spec" in obj and not isinstance(obj["spec"], dict):
        return f"spec must be a mapping, got {_shown(obj['spec'])}"
    return None


def _shown(value: object) -> str:
    return "null" if value is None else f"{type(value).__name__} {str(value)[:40]!r}"


def synthetic_create(obj: dict[str, Any], subject: Subject, number: int) -> AdmissionRequest:
    group, version, resource = AUDITED[subject.kind]
    return AdmissionRequest.model_validate(
        {
            "uid": f"audit-{number}",
            "kind": {"group": group, "version": version, "kind": subject.kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "name": subject.name,
            "namespace": subject.namespace,
            "operation": "CREATE",
            "userInfo": {"username": AUDIT_USER},
            "object": obj,
            "dryRun": True,
        }
    )


def judge(engine: Engine, subjects: Iterable[tuple[dict[str, Any], Subject]]) -> Report:
    """Judge each object the policies know as a dry-run CREATE; list the exceptions in
    force."""
    report = Report()
    report.exceptions = exceptions_in_force(
        engine.view, now=engine.clock(), longest=engine.config.longest_exception
    )
    for number, (obj, subject) in enumerate(subjects):
        if subject.kind not in AUDITED:
            continue
        problem = malformed(obj)
        if problem is not None:
            message = f"{subject}: {problem}; the API server would refuse it. Fix the manifest."
            finding = Finding(MANIFEST, "enforce", "fail", message)
            report.judged.append(Judged(subject, [MANIFEST], [finding], []))
            continue
        outcome = engine.admit(synthetic_create(obj, subject, number))
        # dict.fromkeys: a policy with both phases says a skip once, not twice
        findings = list(
            dict.fromkeys(f for verdict in outcome.verdicts for f in findings_of(verdict))
        )
        policies = list(dict.fromkeys(v.policy for v in outcome.verdicts))  # mutate+validate
        report.judged.append(Judged(subject, policies, findings, outcome.patch))
    return report


def manifest_subjects(manifests: Iterable[Manifest]) -> Iterable[tuple[dict[str, Any], Subject]]:
    for m in manifests:
        yield (
            m.object,
            subject_of(m.object, source=m.source, index=m.index, line=m.line, item=m.item),
        )


def cluster_subjects(objects: Iterable[dict[str, Any]]) -> Iterable[tuple[dict[str, Any], Subject]]:
    """The live objects to judge; a Deployment's ReplicaSets are judged with the Deployment."""
    for obj in objects:
        owners = (obj.get("metadata") or {}).get("ownerReferences") or []
        if obj["kind"] == "ReplicaSet" and any(o.get("kind") == "Deployment" for o in owners):
            continue
        yield obj, subject_of(obj, source="cluster")
