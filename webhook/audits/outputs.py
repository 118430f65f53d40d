"""An audit report as people and CI read it: a table, JSON, SARIF 2.1.0 and JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote

import orjson

from policies import exceptions
from policies.registry import BY_ID
from webhook.audits.audit import (
    MANIFEST,
    MANIFEST_RATIONALE,
    ExceptionInForce,
    Finding,
    Judged,
    Report,
)

FORMATS = ("table", "json", "sarif", "junit")
SARIF_LEVEL = {
    "fail": "error",
    "warn": "warning",
    "change": "note",
    "audit": "note",
    "skip": "note",
    "excepted": "note",
}


def render(report: Report, fmt: str) -> str:
    return {"table": table, "json": as_json, "sarif": sarif, "junit": junit}[fmt](report)


def _where(judged: Judged) -> str:
    subject = judged.subject
    return f"{subject.source}:{subject.line}" if subject.source else ""


def table(report: Report) -> str:
    rows = [("RESULT", "POLICY", "OBJECT", "WHERE", "MESSAGE")]
    for judged in report.judged:
        for f in judged.findings:
            rows.append((f.outcome, f.policy, str(judged.subject), _where(judged), f.message))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    ]
    s = report.summary()
    lines.append("")
    lines.append(
        f"{s['objects']} objects: {s['fail']} failed (enforce), {s['warn']} warnings, "
        f"{s['change']} changes, {s['audit']} audit records, "
        + (f"{s['skip']} skipped by annotation, " if s["skip"] else "")
        + (f"{s['excepted']} let past by exceptions, " if s["excepted"] else "")
        + f"{s['pass']} policy checks passed"
    )
    if len(rows) == 1:
        lines = lines[-1:]
    return "\n".join(lines + _exceptions_table(report)) + "\n"


def _exceptions_table(report: Report) -> list[str]:
    """The GuardExceptions in force, soonest-ending first; those ending within a day marked."""
    if not report.exceptions:
        return []
    rows = [("EXCEPTION", "POLICIES", "ENDS", "OBJECTS", "WHO", "REASON")]
    for e in report.exceptions:
        ends = exceptions.stamp(e.ends) + (" (within a day)" if e.ending_soon else "")
        rows.append((e.ref, ",".join(e.policies), ends, e.objects, e.who, e.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    soon = sum(1 for e in report.exceptions if e.ending_soon)
    return [
        "",
        f"{len(report.exceptions)} GuardExceptions in force ({soon} ending within a day):",
        *(
            "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
            for r in rows
        ),
    ]


def _exception(e: ExceptionInForce) -> dict[str, Any]:
    return {
        "namespace": e.namespace,
        "name": e.name,
        "policies": list(e.policies),
        "objects": e.objects,
        "who": e.who,
        "reason": e.reason,
        "approvedBy": e.approved_by,
        "ends": exceptions.stamp(e.ends),
        "endingWithinADay": e.ending_soon,
    }


def _finding(f: Finding) -> dict[str, Any]:
    return {"policy": f.policy, "mode": f.mode, "result": f.outcome, "message": f.message}


def as_json(report: Report) -> str:
    results = []
    for judged in report.judged:
        s = judged.subject
        results.append(
            {
                "object": {
                    "apiVersion": s.api_version,
                    "kind": s.kind,
                    "namespace": s.namespace,
                    "name": s.name,
                    "source": s.source,
                    "document": s.index,
                    "line": s.line,
                },
                "failed": judged.failed,
                "findings": [_finding(f) for f in judged.findings],
                "patch": judged.patch,
            }
        )
    return (
        orjson.dumps(
            {
                "summary": report.summary(),
                "results": results,
                "exceptions": [_exception(e) for e in report.exceptions],
            },
            option=orjson.OPT_INDENT_2,
        ).decode()
        + "\n"
    )


def sarif(report: Report) -> str:
    policy_ids = sorted(
        {f.policy for j in report.judged for f in j.findings}
        | {p for j in report.judged for p in j.policies}
    )
    rules = []
    for policy_id in policy_ids:
        policy = BY_ID.get(policy_id)
        warns = policy is not None and policy.default_mode.value == "warn"
        rationale = policy.rationale if policy else MANIFEST_RATIONALE
        assert policy is not None or policy_id == MANIFEST
        rules.append(
            {
                "id": policy_id,
                "shortDescription": {"text": rationale},
                "defaultConfiguration": {"level": "warning" if warns else "error"},
            }
        )
    index = {rule["id"]: n for n, rule in enumerate(rules)}
    results = []
    for judged in report.judged:
        subject = judged.subject
        location: dict[str, Any] = {
            "logicalLocations": [
                {
                    "name": subject.name,
                    "kind": "resource",
                    "fullyQualifiedName": f"{subject.kind}/{subject.namespace}/{subject.name}",
                }
            ]
        }
        if subject.source and subject.source not in ("-", "cluster"):
            location["physicalLocation"] = {
                "artifactLocation": {"uri": quote(subject.source)},
                "region": {"startLine": subject.line},
            }
        for f in judged.findings:
            results.append(
                {
                    "ruleId": f.policy,
                    "ruleIndex": index[f.policy],
                    "level": SARIF_LEVEL[f.outcome],
                    "message": {
                        "text": f"{subject}: {f.message}"
                        if str(subject) not in f.message
                        else f.message
                    },
                    "locations": [location],
                    "properties": {"mode": f.mode, "result": f.outcome},
                }
            )
    document = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "stateful-guard", "version": "0.1.0", "rules": rules}},
                "results": results,
            }
        ],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def junit(report: Report) -> str:
    """One test case per object and policy; a failure for each enforce-mode refusal."""
    suite = ET.Element("testsuite", name="stateful-guard audit")
    tests = failures = 0
    for judged in report.judged:
        by_policy: dict[str, list[Finding]] = {p: [] for p in judged.policies}
        for f in judged.findings:
            by_policy.setdefault(f.policy, []).append(f)
        for policy, findings in by_policy.items():
            tests += 1
            case = ET.SubElement(suite, "testcase", classname=str(judged.subject), name=policy)
            if judged.subject.source:
                case.set("file", judged.subject.source)
                case.set("line", str(judged.subject.line))
            failed = [f for f in findings if f.outcome == "fail"]
            if failed:
                failures += 1
                failure = ET.SubElement(
                    case, "failure", type=policy, message=failed[0].message[:200]
                )
                failure.text = "\n".join(f.message for f in failed)
            others = [f"{f.outcome}: {f.message}" for f in findings if f.outcome != "fail"]
            if others:
                ET.SubElement(case, "system-out").text = "\n".join(others)
    for key, value in (("tests", tests), ("failures", failures), ("errors", 0), ("skipped", 0)):
        suite.set(key, str(value))
    root = ET.Element("testsuites", name="stateful-guard", tests=str(tests), failures=str(failures))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
