"""The JSON Patch differ: readable operations that a standard library applies exactly."""

from __future__ import annotations

import copy
import random
from typing import Any

import jsonpatch
import pytest

from webhook.patch import diff

INIT = {"name": "server-id", "image": "busybox:1.37"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param({"a": 1}, {"a": 1}, [], id="equal"),
        pytest.param(
            {}, {"a": {"b": 1}}, [{"op": "add", "path": "/a", "value": {"b": 1}}], id="add-subtree"
        ),
        pytest.param({"a": 1, "b": 2}, {"a": 1}, [{"op": "remove", "path": "/b"}], id="remove"),
        pytest.param(
            {"a": 1}, {"a": "1"}, [{"op": "replace", "path": "/a", "value": "1"}], id="replace-type"
        ),
        pytest.param(
            {"a/b~c": 1},
            {"a/b~c": 2},
            [{"op": "replace", "path": "/a~1b~0c", "value": 2}],
            id="escaping",
        ),
        pytest.param(
            {"initContainers": [{"name": "a"}, {"name": "b"}]},
            {"initContainers": [INIT, {"name": "a"}, {"name": "b"}]},
            [{"op": "add", "path": "/initContainers/0", "value": INIT}],
            id="insert-front-is-one-add",
        ),
        pytest.param(
            {"c": [{"name": "a"}]},
            {"c": [{"name": "a"}, INIT]},
            [{"op": "add", "path": "/c/1", "value": INIT}],
            id="append-is-one-add",
        ),
        pytest.param(
            {"c": [1, 2, 3]},
            {"c": [3, 2]},
            [{"op": "replace", "path": "/c", "value": [3, 2]}],
            id="shrunk-list-replaced-whole",
        ),
        pytest.param(
            {"c": [{"x": 1}, {"x": 2}]},
            {"c": [{"x": 1}, {"x": 3}]},
            [{"op": "replace", "path": "/c/1/x", "value": 3}],
            id="same-length-recurse",
        ),
    ],
)
def test_diff(old: Any, new: Any, expected: list[dict[str, Any]]) -> None:
    ops = diff(old, new)
    assert ops == expected
    assert jsonpatch.apply_patch(copy.deepcopy(old), ops) == new


def _mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict):
        value = dict(value)
        for key in list(value):
            roll = rng.random()
            if roll < 0.15:
                del value[key]
            elif roll < 0.6:
                value[key] = _mutate(rng, value[key], depth + 1)
        if rng.random() < 0.3:
            value[f"k{rng.randrange(5)}/~"] = _random(rng, depth + 1)
        return value
    if isinstance(value, list):
        value = [_mutate(rng, v, depth + 1) if rng.random() < 0.5 else v for v in value]
        if rng.random() < 0.3:
            value.insert(rng.randrange(len(value) + 1), _random(rng, depth + 1))
        if value and rng.random() < 0.2:
            value.pop(rng.randrange(len(value)))
        return value
    return _random(rng, depth) if rng.random() < 0.5 else value


def _random(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.4:
        return rng.choice([0, 1, "x", "", None, True, 2.5])
    if roll < 0.7:
        return {f"k{i}": _random(rng, depth + 1) for i in range(rng.randrange(4))}
    return [_random(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_diff_round_trips_random_documents() -> None:
    rng = random.Random(20261122)
    for _ in range(2000):
        old = _random(rng, 0)
        new = _mutate(rng, old)
        assert jsonpatch.apply_patch(copy.deepcopy(old), diff(old, new)) == new
