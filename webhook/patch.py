"""Diff two JSON documents into a short, readable RFC 6902 patch.

Mutators edit a copy; this turns the difference into the patch the API server applies
(with evanphx/json-patch). Lists get one `add` for an inserted or appended element rather
than a cascade of index shuffles; anything else that changed is replaced whole.
"""

from __future__ import annotations

from typing import Any

Op = dict[str, Any]


def _escape(token: str | int) -> str:
    token = str(token)
    if "~" in token or "/" in token:
        return token.replace("~", "~0").replace("/", "~1")
    return token


def diff(old: Any, new: Any, path: str = "") -> list[Op]:
    """The operations that turn `old` into `new` (empty when they are equal)."""
    if old == new:
        return []
    return _diff(old, new, path)


def _diff(old: Any, new: Any, path: str) -> list[Op]:
    """`diff` for values known to differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return _diff_dicts(old, new, path)
    if isinstance(old, list) and isinstance(new, list):
        return _diff_lists(old, new, path)
    return [{"op": "replace", "path": path, "value": new}]


def _diff_dicts(old: dict[str, Any], new: dict[str, Any], path: str) -> list[Op]:
    ops: list[Op] = []
    for key, value in old.items():
        if key not in new:
            ops.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
        elif value != new[key]:  # one C-level compare; recurse only into what changed
            ops.extend(_diff(value, new[key], f"{path}/{_escape(key)}"))
    if len(new) > len(old) - sum(1 for op in ops if op["op"] == "remove"):
        ops.extend(
            {"op": "add", "path": f"{path}/{_escape(key)}", "value": value}
            for key, value in new.items()
            if key not in old
        )
    return ops


def _diff_lists(old: list[Any], new: list[Any], path: str) -> list[Op]:
    if len(new) == len(old):
        ops: list[Op] = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            if a != b:
                ops.extend(_diff(a, b, f"{path}/{index}"))
        return ops
    if len(new) > len(old):
        # Elements inserted in one run (at the front, middle or end): one add each. The usual
        # shapes, appended and prepended, are one C-level slice comparison each.
        added = len(new) - len(old)
        if new[: len(old)] == old:
            prefix, matched = len(old), True
        elif new[added:] == old:
            prefix, matched = 0, True
        else:
            prefix = 0
            while prefix < len(old) and old[prefix] == new[prefix]:
                prefix += 1
            matched = old[prefix:] == new[prefix + added :]
        if matched:
            return [
                {"op": "add", "path": f"{path}/{prefix + i}", "value": new[prefix + i]}
                for i in range(added)
            ]
    return [{"op": "replace", "path": path, "value": new}]
