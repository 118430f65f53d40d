"""An audit report as people and CI read it: a table, JSON, SARIF 2.1.0 and JUnit XML."""

from __future__ import annotations

import shutil
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import orjson

from policies import exceptions
from policies.registry import BY_ID
from webhook import package_version
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
    "error": "error",
}
WIDTH_WHEN_NOT_A_TERMINAL = 120


def render(report: Report, fmt: str) -> str:
    return {"table": table, "json": as_json, "sarif": sarif, "junit": junit}[fmt](report)


def terminal_width() -> int:
    """The terminal's columns ($COLUMNS first); a fixed width when writing to a file."""
    return shutil.get_terminal_size((WIDTH_WHEN_NOT_A_TERMINAL, 24)).columns


def _plural(count: int, word: str, plural: str = "") -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _message(judged: Judged, message: str) -> str:
    """A finding as a table row says it: the object is in its own column, and the result
    column already says that a warn-mode refusal would deny."""
    message = message.removeprefix("would deny: ")
    subject = judged.subject
    for named in (
        f"{subject}: ",
        f"{subject.kind.lower()} {subject.namespace}/{subject.name}: ",
        f"{subject.kind} {subject.name}: ",
    ):
        if message.startswith(named):
            return message[len(named) :]
    return message


def _columns(rows: Sequence[tuple[str, ...]], width: int) -> list[str]:
    """Rows whose last column wraps to fit `width` (full text: `-o json`). Where the other
    columns leave it less than 40 characters, it goes under its row instead, indented."""
    fixed = [[_cut(c, width - 4) for c in r[:-1]] for r in rows]
    widths = [max(len(r[i]) for r in fixed) for i in range(len(fixed[0]))]
    indent = sum(widths) + 2 * len(widths)
    beside = width - indent >= 40
    lines = []
    for cells, row in zip(fixed, rows, strict=True):
        head = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        if beside:
            wrapped = textwrap.wrap(row[-1], width - indent, break_on_hyphens=False) or [""]
            lines.append(f"{head}  {wrapped[0]}")
            lines += [" " * indent + more for more in wrapped[1:]]
        else:
            lines.append(head.rstrip() if len(head) <= width else _cut(head, width))
            lines += textwrap.wrap(
                row[-1], width, initial_indent="    ", subsequent_indent="    ",
                break_on_hyphens=False,
            )  # fmt: skip
    return lines


def summary_line(report: Report) -> str:
    s = report.summary()
    findings = sum(s[k] for k in ("fail", "warn", "change", "audit", "skip", "excepted"))
    parts = [
        f"{s['fail']} failed (enforce)",
        _plural(s["warn"], "warning"),
        _plural(s["change"], "change"),
        _plural(s["audit"], "audit record"),
    ]
    if s["skip"]:
        parts.append(f"{s['skip']} skipped by annotation")
    if s["excepted"]:
        parts.append(f"{s['excepted']} let past by exceptions")
    if s["error"]:
        parts.append(_plural(s["error"], "unreadable file"))
    judged = s["objects"] - s["error"]
    return (
        f"{_plural(judged, 'object')}, {_plural(findings, 'finding')}: {', '.join(parts)}; "
        f"{_plural(s['pass'], 'policy check')} passed"
    )


def table(report: Report, width: int | None = None) -> str:
    width = width or terminal_width()
    rows: list[tuple[str, ...]] = [("RESULT", "POLICY", "OBJECT", "WHERE", "MESSAGE")]
    for judged in report.judged:
        for f in judged.findings:
            rows.append(
                (
                    f.outcome,
                    f.policy,
                    str(judged.subject),
                    judged.subject.where,
                    _message(judged, f.message),
                )
            )
    lines = [*_columns(rows, width), ""] if len(rows) > 1 else []
    lines += textwrap.wrap(summary_line(report), width)
    return "\n".join(lines + _exceptions_table(report, width)) + "\n"


def _exceptions_table(report: Report, width: int) -> list[str]:
    """The GuardExceptions in force, soonest-ending first; those ending within a day marked."""
    if not report.exceptions:
        return []
    rows = [("EXCEPTION", "POLICIES", "ENDS", "OBJECTS", "WHO", "REASON")]
    for e in report.exceptions:
        ends = exceptions.stamp(e.ends) + (" (within a day)" if e.ending_soon else "")
        rows.append((e.ref, ",".join(e.policies), ends, e.objects, e.who, e.reason))
    soon = sum(1 for e in report.exceptions if e.ending_soon)
    count = _plural(len(report.exceptions), "GuardException")
    return ["", f"{count} in force ({soon} ending within a day):", *_columns(rows, width)]


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
                    "document": s.index + 1,
                    "line": s.line,
                    **({"item": s.item} if s.item else {}),
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
                "tool": {
                    "driver": {
                        "name": "stateful-guard",
                        "version": package_version(),
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters, cut between words, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 3].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "..."


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
                    case, "failure", type=policy, message=_cut(failed[0].message, 200)
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
