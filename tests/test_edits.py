"""Edits: operations that a standard JSON Patch library applies exactly, on objects that are
never edited in place."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.edits import Edits, pointer

INIT = {"name": "server-id", "image": "busybox:1.37"}


def edited(obj: dict[str, Any], change: Any) -> Edits:
    before = copy.deepcopy(obj)
    edits = Edits(obj)
    change(edits)
    assert obj == before, "the object given is never edited"
    assert jsonpatch.apply_patch(copy.deepcopy(obj), edits.ops) == edits.object
    return edits


@pytest.mark.parametrize(
    ("obj", "change", "ops"),
    [
        pytest.param(
            {"spec": {"a": 1}},
            lambda e: e.set(("spec", "a"), 1),
            [],
            id="same-value-no-op",
        ),
        pytest.param(
            {"spec": {"a": 1}},
            lambda e: e.set(("spec", "a"), 2),
            [{"op": "replace", "path": "/spec/a", "value": 2}],
            id="replace",
        ),
        pytest.param(
            {"spec": {"a": None}},
            lambda e: e.set(("spec", "a"), 2),
            [{"op": "replace", "path": "/spec/a", "value": 2}],
            id="replace-null",
        ),
        pytest.param(
            {"spec": {}},
            lambda e: e.set(("spec", "a"), 2),
            [{"op": "add", "path": "/spec/a", "value": 2}],
            id="add-field",
        ),
        pytest.param(
            {},
            lambda e: e.set(("spec", "template", "spec", "x"), 1),
            [{"op": "add", "path": "/spec", "value": {"template": {"spec": {"x": 1}}}}],
            id="missing-parents-one-add",
        ),
        pytest.param(
            {"a/b~c": 1},
            lambda e: e.set(("a/b~c",), 2),
            [{"op": "replace", "path": "/a~1b~0c", "value": 2}],
            id="escaping",
        ),
        pytest.param(
            {"c": [{"name": "a"}]},
            lambda e: e.insert(("c",), INIT, index=0),
            [{"op": "add", "path": "/c/0", "value": INIT}],
            id="insert-front",
        ),
        pytest.param(
            {"c": [{"name": "a"}]},
            lambda e: e.insert(("c",), INIT),
            [{"op": "add", "path": "/c/1", "value": INIT}],
            id="append",
        ),
        pytest.param(
            {"spec": {}},
            lambda e: e.insert(("spec", "c"), INIT),
            [{"op": "add", "path": "/spec/c", "value": [INIT]}],
            id="missing-list-added",
        ),
        pytest.param(
            {"c": [{"x": 1}, {"x": 2}]},
            lambda e: e.set(("c", 1, "x"), 3),
            [{"op": "replace", "path": "/c/1/x", "value": 3}],
            id="inside-a-list",
        ),
    ],
)
def test_operations(obj: dict[str, Any], change: Any, ops: list[dict[str, Any]]) -> None:
    assert edited(obj, change).ops == ops


def test_untouched_subtrees_are_shared_and_later_edits_read_earlier_ones() -> None:
    obj = {"metadata": {"name": "db"}, "spec": {"template": {"spec": {"containers": []}}}}
    edits = Edits(obj)
    edits.insert(("spec", "template", "spec", "containers"), {"name": "a"})
    edits.set(("spec", "template", "spec", "containers", 0, "image"), "x")
    assert edits.get(("spec", "template", "spec", "containers", 0)) == {"name": "a", "image": "x"}
    assert edits.object["metadata"] is obj["metadata"]
    assert obj["spec"]["template"]["spec"]["containers"] == []


def test_a_value_given_is_copied_before_it_is_edited() -> None:
    shared = {"name": "a"}  # e.g. a module constant a policy inserts
    edits = Edits({})
    edits.set(("c",), shared)
    edits.set(("c", "image"), "x")
    assert shared == {"name": "a"}


def test_edits_that_cannot_apply_raise() -> None:
    with pytest.raises(TypeError):
        Edits({"spec": "text"}).set(("spec", "a"), 1)
    with pytest.raises(TypeError):
        Edits({"spec": {"c": "text"}}).insert(("spec", "c"), 1)
    with pytest.raises(IndexError):
        Edits({"c": []}).insert(("c",), 1, index=2)
    edits = Edits({"c": [1]})
    with pytest.raises(IndexError):
        edits.set(("c", "x"), 1)  # a key inside a list
    assert edits.ops == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=3), JSON, max_size=4), st.data())
def test_any_sequence_of_edits_patches_exactly(obj: dict[str, Any], data: st.DataObject) -> None:
    before = copy.deepcopy(obj)
    edits = Edits(obj)
    for _ in range(data.draw(st.integers(0, 5))):
        containers = [p for p in _paths(edits.object) if isinstance(edits.get(p), dict | list)]
        path = data.draw(st.sampled_from(containers))
        value = data.draw(JSON)
        target = edits.get(path)
        if isinstance(target, dict):
            key = data.draw(st.sampled_from([*target, "new"]))
            edits.set((*path, key), value)
        else:
            edits.insert(path, value, index=data.draw(st.integers(0, len(target))))
    assert obj == before
    assert jsonpatch.apply_patch(copy.deepcopy(obj), edits.ops) == edits.object
    assert all(op["path"] != pointer(()) for op in edits.ops)
