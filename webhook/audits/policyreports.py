"""Audit results as `wgpolicyk8s.io/v1alpha2` PolicyReports, one per namespace, the format the
Kubernetes Policy WG defined and Kyverno, Trivy and dashboards read.

Bounded: every non-passing result is listed (up to MAX_RESULTS), passes are only counted in
the summary, so a namespace with thousands of healthy objects keeps a small report. Reports
are created, or replaced in place, under one name per namespace.

Besides the objects judged now, a report lists the refused attempts the webhook recorded as
Events (`webhook/cluster/events.py`): one result per Event, category `refused attempt`,
`fail` where the delete, eviction or scale was refused and `warn` where warn or audit mode
would have refused it, with the user and the number of tries in its properties; and the
uses of GuardExceptions, category `exception used`, `skip` (the policy was not applied),
naming the exception. Events live as long as the API server keeps them (an hour by
default).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client as k8s

from policies.config import Config
from webhook.audits.audit import Report, cluster_subjects, judge
from webhook.cluster import events
from webhook.cluster.live import cluster_objects
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine

NAME = "stateful-guard"
GROUP, VERSION, PLURAL = "wgpolicyk8s.io", "v1alpha2", "policyreports"
MAX_RESULTS = 500
RESULT = {"fail": "fail", "warn": "warn", "change": "warn", "audit": "warn", "excepted": "skip"}
SEVERITY = {"fail": "high", "warn": "medium", "change": "low", "audit": "low", "excepted": "info"}


def _seconds(stamp: object) -> int:
    try:
        return int(dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def attempt_result(event: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A recorded refusal as a PolicyReport result, and the namespace it belongs to."""
    involved = event.get("involvedObject") or {}
    meta = event.get("metadata") or {}
    notes = meta.get("annotations") or {}
    refused = event.get("reason") == "Refused"
    exception = str(notes.get(events.EXCEPTION_ANNOTATION) or "")
    policy = str(notes.get(events.POLICY_ANNOTATION) or "unknown")
    action = str(event.get("action") or "")
    namespace = str(involved.get("namespace") or meta.get("namespace") or "")
    resource = {
        k: involved[k] for k in ("apiVersion", "kind", "name", "namespace", "uid") if k in involved
    }
    return namespace, {
        "source": NAME,
        "policy": policy,
        "rule": f"{policy}/{action.lower() or 'attempt'}",
        "category": "exception used" if exception else "refused attempt",
        "result": "skip" if exception else "fail" if refused else "warn",
        "severity": "info" if exception else "high" if refused else "medium",
        "message": str(event.get("message") or ""),
        "resources": [resource],
        "timestamp": {"seconds": _seconds(event.get("lastTimestamp")), "nanos": 0},
        "properties": {
            "attempt": action,
            "outcome": "excepted" if exception else "refused" if refused else "would refuse",
            **({"exception": exception} if exception else {}),
            "mode": str(notes.get(events.MODE_ANNOTATION) or ""),
            "user": str(notes.get(events.USER_ANNOTATION) or ""),
            "count": str(event.get("count") or 1),
            "firstTimestamp": str(event.get("firstTimestamp") or ""),
            "lastTimestamp": str(event.get("lastTimestamp") or ""),
        },
    }


def policy_reports(
    report: Report,
    *,
    attempts: Iterable[Mapping[str, Any]] = (),
    now: float | None = None,
) -> list[dict[str, Any]]:
    """One report per namespace: `report`'s findings and the recorded refused `attempts`
    (our Events)."""
    stamp = {"seconds": int(now or time.time()), "nanos": 0}
    by_namespace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    summaries: dict[str, dict[str, int]] = defaultdict(
        lambda: {"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0}
    )
    for judged in report.judged:
        subject = judged.subject
        summary = summaries[subject.namespace]
        resource = {
            "apiVersion": subject.api_version,
            "kind": subject.kind,
            "name": subject.name,
            "namespace": subject.namespace,
        }
        if subject.uid:
            resource["uid"] = subject.uid
        flagged = set()
        for finding in judged.findings:
            flagged.add(finding.policy)
            result = RESULT[finding.outcome]
            summary[result] += 1
            by_namespace[subject.namespace].append(
                {
                    "source": NAME,
                    "policy": finding.policy,
                    "rule": finding.policy,
                    "result": result,
                    "severity": SEVERITY[finding.outcome],
                    "message": finding.message,
                    "resources": [resource],
                    "timestamp": stamp,
                    "properties": {"mode": finding.mode, "outcome": finding.outcome},
                }
            )
        summary["pass"] += sum(1 for p in judged.policies if p not in flagged)
    for event in attempts:
        namespace, attempt = attempt_result(event)
        summaries[namespace][attempt["result"]] += 1
        by_namespace[namespace].append(attempt)
    reports = []
    for namespace in sorted(summaries):
        results = by_namespace[namespace]
        if len(results) > MAX_RESULTS:
            summaries[namespace]["skip"] += len(results) - MAX_RESULTS
            results = sorted(results, key=lambda r: r["result"] != "fail")[:MAX_RESULTS]
        reports.append(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "PolicyReport",
                "metadata": {
                    "name": NAME,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/managed-by": NAME},
                },
                "summary": summaries[namespace],
                "results": results,
            }
        )
    return reports


def write(api: k8s.ApiClient, reports: list[dict[str, Any]]) -> list[str]:
    """Create each report, or replace the one already there; returns what was done."""
    custom = k8s.CustomObjectsApi(api)
    done = []
    for body in reports:
        namespace = body["metadata"]["namespace"]
        try:
            existing: Any = custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, NAME
            )
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
            done.append(f"created PolicyReport {namespace}/{NAME}")
            continue
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME, body)
        done.append(f"updated PolicyReport {namespace}/{NAME}")
    return done


def refresh(api: k8s.ApiClient, config: Config) -> list[str]:
    """One background audit: list the cluster, judge it, write the reports. Blocking.

    It lists whole objects afresh rather than reading the webhook's cache, which keeps of each
    object only the fields policies look up about *other* objects (judging a set needs its
    whole pod template)."""
    objects = cluster_objects(api)
    report = judge(Engine(MemoryView(objects), config), cluster_subjects(objects))
    return write(api, policy_reports(report, attempts=events.recorded(api)))
