"""The real-world corpus (../shared/corpus: public charts as users install them), audited in
the shipped default config: every finding is listed, with an operator's justification, in
tests/corpus/findings.yaml, and none is a refusal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from policies.config import Config
from tests.support import ROOT
from webhook.audits.audit import Report, judge, manifest_subjects
from webhook.cluster.manifests import load
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine

CORPUS = ROOT.parent / "shared" / "corpus"
EXPECTED = ROOT / "tests" / "corpus" / "findings.yaml"
UPDATE = os.environ.get("STATEFUL_GUARD_UPDATE_GOLDEN") == "1"


def corpus_files() -> list[Path]:
    files = sorted(CORPUS.glob("*.yaml"))
    assert len(files) >= 26, f"the corpus is read from {CORPUS} (shared/ beside the checkout)"
    return files


def audit(config: Config | None = None) -> Report:
    manifests = load(corpus_files())
    cluster = [m.object for m in load([CORPUS / "cluster" / "default-class.yaml"])]
    view = MemoryView([*(m.object for m in manifests), *cluster])
    return judge(Engine(view, config), manifest_subjects(manifests))


def entries(report: Report) -> list[dict[str, str]]:
    return [
        {
            "file": Path(j.subject.source).name,
            "finding": f"{f.outcome} {f.policy} {j.subject}",
            "message": f.message,
        }
        for j in report.judged
        for f in j.findings
    ]


def expected() -> dict[str, Any]:
    return yaml.safe_load(EXPECTED.read_text())


def test_every_corpus_finding_is_listed_and_justified() -> None:
    found = entries(audit())
    listed = expected()["findings"]
    if UPDATE:
        why = {(e["file"], e["finding"], e["message"]): e.get("why", "") for e in listed}
        document = expected()
        document["findings"] = [
            {**e, "why": why.get((e["file"], e["finding"], e["message"]), "")} for e in found
        ]
        EXPECTED.write_text(yaml.safe_dump(document, sort_keys=False, width=100))
        listed = document["findings"]
    assert [{k: e[k] for k in ("file", "finding", "message")} for e in listed] == found
    unjustified = [e["finding"] for e in listed if len(str(e.get("why", "")).strip()) < 20]
    assert not unjustified, f"each finding needs an operator's justification: {unjustified}"


def test_no_public_chart_is_refused_or_changed_in_the_default_config() -> None:
    report = audit()
    assert [str(j.subject) for j in report.judged if j.failed] == []
    assert [(str(j.subject), j.patch) for j in report.judged if j.patch] == [], (
        "a change to a chart's set makes its next upgrade differ from what helm sends"
    )
    assert len(report.judged) >= 30, "the corpus's sets, claims and deployments were judged"


def test_stateful_practices_at_enforce_refuses_only_what_is_listed() -> None:
    strict = Config.model_validate({"policies": {"stateful-practices": {"mode": "enforce"}}})
    refused = sorted(
        (Path(j.subject.source).name, f"{f.outcome} {f.policy} {j.subject}")
        for j in audit(strict).judged
        for f in j.findings
        if f.outcome == "fail"
    )
    listed = expected()["enforce-stateful-practices"]
    assert refused == sorted((e["file"], e["finding"]) for e in listed)
    assert all(len(e["why"]) >= 20 for e in listed)
