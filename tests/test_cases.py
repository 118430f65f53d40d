"""Table-driven policy cases: `tests/cases/<policy-id>/<case>.yaml`, each one admission request
run through the whole chain (mutate, then validate the mutated object) as the API server would.

A case with a mutation has a golden `<case>.patch.json` beside it; regenerate the goldens with
`STATEFUL_GUARD_UPDATE_GOLDEN=1 pytest tests/test_cases.py` and review the diff.

Case format:
    description: what the case shows
    config: {...}                  # optional config file contents
    view: manifests | empty        # default manifests: `objects` + `objectsFrom` are the cluster
    objects: [...]                 # cluster objects
    objectsFrom: [nginx-web.yaml]  # files in examples/ loaded into the view
    now: 2026-12-06T09:30:00Z      # the engine's clock (GuardExceptions); default: real time
    request:                       # an AdmissionRequest; kind/resource/uid derived
      operation: CREATE
      namespace: db
      object: {...}  | objectFrom: {file: nginx-web.yaml, kind: StatefulSet}
      oldObject: {...}
      userInfo: {username: ..., groups: [...]}
      options: {...}
    expect:
      allowed: true
      message: [substrings of the denial]
      warnings: [substrings, each found in some warning]   # []: none from this policy
      annotations: [audit annotation keys]
      records: ["Refused Delete Pod web-0 [force-delete]"]   # the Events it leaves, exactly
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from policies.config import Config
from policies.exceptions import parse_time
from policies.registry import POLICIES
from policies.request import AdmissionRequest
from tests.support import EXAMPLES, load_yaml, request_dict
from webhook.cluster.events import records
from webhook.cluster.live import RESOURCES
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine, Outcome

TRIM = {r.kind: r.trim for r in RESOURCES}

CASES = Path(__file__).parent / "cases"
UPDATE_GOLDEN = os.environ.get("STATEFUL_GUARD_UPDATE_GOLDEN") == "1"


@dataclass
class Case:
    policy: str
    path: Path
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.policy}/{self.path.stem}"

    @property
    def golden(self) -> Path:
        return self.path.with_suffix(".patch.json")

    @property
    def namespace(self) -> str:
        return str(self.spec["request"].get("namespace", "default"))

    def object_from(self, ref: dict[str, str]) -> dict[str, Any]:
        for doc in load_yaml(EXAMPLES / ref["file"]):
            if (
                doc["kind"] == ref["kind"]
                and ref.get("name", doc["metadata"]["name"]) == doc["metadata"]["name"]
            ):
                return doc
        raise LookupError(f"{self.id}: {ref} not found")

    def request(self) -> AdmissionRequest:
        spec = copy.deepcopy(self.spec["request"])
        if "objectFrom" in spec:
            spec["object"] = self.object_from(spec.pop("objectFrom"))
        user = spec.pop("userInfo", {})
        data = request_dict(
            spec.pop("operation"),
            spec.pop("object", None),
            old=spec.pop("oldObject", None),
            namespace=spec.pop("namespace", "default"),
            username=user.get("username", "alice"),
            groups=user.get("groups"),
            options=spec.pop("options", None),
            **spec,
        )
        return AdmissionRequest.model_validate(data)

    def engine(self, *, trimmed: bool = False) -> Engine:
        """The engine over the case's cluster; `trimmed` keeps of each object only what the
        live view's cache keeps."""
        config = Config.model_validate(self.spec.get("config") or {})
        now = self.spec.get("now")
        clock = None
        if now is not None:
            when = parse_time(now)
            assert when is not None, f"{self.id}: now: {now!r} is not an RFC 3339 time"
            clock = lambda: when  # noqa: E731
        if self.spec.get("view", "manifests") == "empty":
            return Engine(MemoryView.empty(), config, clock=clock)
        objects = list(self.spec.get("objects") or [])
        for file in self.spec.get("objectsFrom") or []:
            objects.extend(load_yaml(EXAMPLES / file))
        if trimmed:
            objects = [
                {"kind": o["kind"], **TRIM[o["kind"]](o)} for o in objects if o["kind"] in TRIM
            ]
        return Engine(MemoryView(objects, default_namespace=self.namespace), config, clock=clock)


def load_cases() -> list[Case]:
    return [
        Case(path.parent.name, path, load_yaml(path)[0]) for path in sorted(CASES.glob("*/*.yaml"))
    ]


ALL_CASES = load_cases()


def _check(case: Case, outcome: Outcome) -> None:
    expect = case.spec["expect"]
    assert outcome.allowed is expect["allowed"], (outcome.message, outcome.warnings)
    for part in expect.get("message", []):
        assert part in outcome.message, f"{part!r} not in {outcome.message!r}"
    if not expect["allowed"]:
        assert f"[{case.policy}] " in outcome.message, outcome.message
        assert outcome.code == expect.get("code", 403), outcome.message
    if "warnings" in expect:
        if not expect["warnings"]:  # no warnings from this case's policy
            assert [w for w in outcome.warnings if w.startswith(f"[{case.policy}]")] == []
        for part in expect["warnings"]:
            assert any(part in w for w in outcome.warnings), f"{part!r} not in {outcome.warnings}"
    for warning in outcome.warnings:
        assert len(warning) <= 120 and "\n" not in warning, warning
        assert not warning.endswith("..."), f"policy warning needed truncation: {warning}"
    for key in expect.get("annotations", []):
        assert key in outcome.audit_annotations, outcome.audit_annotations
    if "records" in expect:
        made = [
            f"{r.reason} {r.action} {r.kind} {r.name} [{r.policy}]"
            for r in records(case.request(), outcome)
        ]
        assert made == expect["records"]


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_case(case: Case) -> None:
    request = case.request()
    sent = copy.deepcopy(request.object)
    outcome = case.engine().admit(request)
    assert request.object == sent, "policies never edit the request's object"
    _check(case, outcome)
    if outcome.patch:
        assert jsonpatch.apply_patch(sent, outcome.patch) == outcome.object
    if UPDATE_GOLDEN:
        if outcome.patch:
            case.golden.write_text(json.dumps(outcome.patch, indent=2) + "\n")
        else:
            case.golden.unlink(missing_ok=True)
    if case.golden.exists():
        assert outcome.patch == json.loads(case.golden.read_text())
    else:
        assert outcome.patch == [], f"unexpected patch (no golden file): {outcome.patch}"


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_case_on_the_live_views_trimmed_objects(case: Case) -> None:
    """The live cache keeps only what policies read: every case decides the same on it."""
    request = case.request()
    full, trimmed = case.engine().admit(request), case.engine(trimmed=True).admit(request)
    assert (trimmed.allowed, trimmed.message, trimmed.warnings, trimmed.patch) == (
        full.allowed,
        full.message,
        full.warnings,
        full.patch,
    )


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.golden.exists()], ids=lambda c: c.id)
def test_mutation_is_idempotent(case: Case) -> None:
    """The patched object, sent again, changes no further (a standard JSON Patch library
    applies our patch)."""
    engine = case.engine()
    request = case.request()
    patch = json.loads(case.golden.read_text())
    patched = jsonpatch.apply_patch(request.object, patch)
    again = engine.admit(request.model_copy(update={"object": patched}))
    assert again.patch == []
    _check(case, again)


def test_every_policy_has_passing_failing_and_patching_cases() -> None:
    directories = {p.name for p in CASES.iterdir() if p.is_dir()}
    ids = {p.id for p in POLICIES}
    assert directories == ids, "a cases/ directory per policy id, and no other"
    for policy in POLICIES:
        cases = [c for c in ALL_CASES if c.policy == policy.id]
        outcomes = {c.spec["expect"]["allowed"] for c in cases}
        assert outcomes == {True, False}, f"{policy.id} needs allowed and denied cases"
        if policy.mutates:
            assert any(c.golden.exists() for c in cases), f"{policy.id} needs a patched case"


def test_no_orphan_golden_files() -> None:
    for golden in CASES.glob("*/*.patch.json"):
        assert golden.with_name(golden.name.replace(".patch.json", ".yaml")).exists(), golden
