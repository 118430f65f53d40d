"""Audit results as `wgpolicyk8s.io/v1alpha2` PolicyReports, one per namespace, the format the
Kubernetes Policy WG defined and Kyverno, Trivy and dashboards read.

Bounded: every non-passing result is listed (up to MAX_RESULTS), passes are only counted in
the summary, so a namespace with thousands of healthy objects keeps a small report. Reports
are created, or replaced in place, under one name per namespace.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from kubernetes import client as k8s

from policies.config import Config
from webhook.audits.audit import Report, cluster_subjects, judge
from webhook.cluster.live import cluster_objects
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine

NAME = "stateful-guard"
GROUP, VERSION, PLURAL = "wgpolicyk8s.io", "v1alpha2", "policyreports"
MAX_RESULTS = 500
RESULT = {"fail": "fail", "warn": "warn", "change": "warn", "audit": "warn"}
SEVERITY = {"fail": "high", "warn": "medium", "change": "low", "audit": "low"}


def policy_reports(report: Report, *, now: float | None = None) -> list[dict[str, Any]]:
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
    return write(api, policy_reports(report))
