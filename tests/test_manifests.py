"""Manifests read exactly as PyYAML's safe loader reads them (YAML 1.1, as kubectl does),
whichever way our quicker loader takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import ROOT
from webhook.cluster.manifests import ManifestLoader

try:
    from yaml import CSafeLoader as Reference
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as Reference  # type: ignore[assignment]


def read(text: str, loader: type[yaml.SafeLoader]) -> str:
    """The documents, or the error PyYAML would raise, as text: `repr` tells True from 1 and
    1.0 from 1, and prints a recursive structure (where == would recurse forever)."""
    try:
        return repr(list(yaml.load_all(text, Loader=loader)))
    except yaml.YAMLError as exc:
        return f"{type(exc).__name__}: {exc}"


def same_as_pyyaml(text: str) -> None:
    assert read(text, ManifestLoader) == read(text, Reference)


TRICKY = {
    "yaml-1.1 scalars": "a: yes\nb: off\nc: 0755\nd: 1_000\ne: 1:30\nf: .inf\ng: ~\nh: 0x1F\n"
    "i: 2001-12-14\nj: 1e3\nk: 'yes'\nl: \"0755\"\nm: y\nn: NO\no: .NaN\np:\n",
    "anchors and aliases": "base: &b {image: busybox, args: [a, b]}\ncopy: *b\nlist: [*b, *b]\n",
    "merge keys": "base: &b {cpu: 1}\nlimits:\n  <<: *b\n  memory: 2Gi\n",
    "merge list": "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n",
    "value key": "=: 1\n",
    "explicit tags": "a: !!binary aGVsbG8=\nb: !!str 10\nc: !!int '7'\nd: !!float 1\n"
    "e: !!timestamp 2001-12-14t21:59:43.10-05:00\nf: !!set {x, y}\ng: !!omap [a: 1]\n",
    "unknown tag": "a: !secret x\n",
    "recursive": "a: &a [1, *a]\n",
    "recursive map": "&m {self: *m}\n",
    "complex key": "? [a, b]\n: value\n",
    "complex key map": "? {a: 1}\n: value\n",
    "null key": "~: x\n1: y\ntrue: z\n",
    "duplicate keys": "a: 1\na: 2\n",
    "map tag on scalar": "a: !!map x\n",
    "seq tag on map": "a: !!seq {x: 1}\n",
    "empty documents": "---\n---\na: 1\n...\n---\n",
    "multi-line strings": "a: |\n  one\n  two\nb: >\n  folded\n  text\nc: 'it''s'\n",
    "long plain scalar": "a: " + "x" * 200 + "\nb: " + "1" * 100 + "\n",
    "bad indentation": "a:\n  b: 1\n c: 2\n",
    "unclosed flow": "a: {b: 1\n",
}


@pytest.mark.parametrize("text", TRICKY.values(), ids=TRICKY.keys())
def test_tricky_documents_read_as_pyyaml_reads_them(text: str) -> None:
    same_as_pyyaml(text)


def test_every_manifest_in_the_repository() -> None:
    files = [*ROOT.glob("examples/**/*.yaml"), *ROOT.glob("tests/**/*.yaml")]
    files += [*ROOT.glob("deploy/**/*.yaml")]
    assert len(files) > 20
    for path in files:
        text = Path(path).read_text()
        if "{{" in text:  # Helm templates are not YAML until rendered
            continue
        same_as_pyyaml(text)


def test_aliases_are_shared_as_pyyaml_shares_them() -> None:
    (doc,) = yaml.load_all("a: &x {k: v}\nb: *x\n", Loader=ManifestLoader)
    assert doc["a"] is doc["b"]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["yes", "No", "on", "0755", "1_000", "1:30", "~", "null", "=", "<<", "-"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(scalars, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(documents, st.sampled_from([None, True, False]), st.booleans())
def test_any_dumped_data_reads_back_as_pyyaml_reads_it(
    data: Any, flow: bool | None, canonical: bool
) -> None:
    text = yaml.safe_dump_all([data, data], default_flow_style=flow, canonical=canonical)
    same_as_pyyaml(text)


def test_manifests_take_the_quick_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The speed-up is real only if manifests skip PyYAML's constructor; unusual documents
    still reach it."""
    calls = []
    original = yaml.constructor.BaseConstructor.construct_document

    def counted(self: Any, node: Any) -> Any:
        calls.append(node)
        return original(self, node)

    monkeypatch.setattr(yaml.constructor.BaseConstructor, "construct_document", counted)
    text = (ROOT / "examples" / "cluster.yaml").read_text()
    assert list(yaml.load_all(text, Loader=ManifestLoader))
    assert calls == []
    list(yaml.load_all(TRICKY["merge keys"], Loader=ManifestLoader))
    assert len(calls) == 1
