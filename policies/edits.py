"""Edits: how a mutator changes an object without copying it.

A mutator never edits the object it is given: that object is the request's (or the chain's
so far), shared with the engine and the other policies. It makes its changes through
`Edits`, which records each change as an RFC 6902 operation and applies it to copies of only
the containers on the operation's path; everything else stays shared. The mutator reads
`edits.object` (or `edits.get`) to see its own changes; the engine adopts the operations of
an enforced mutator as they are: they are the patch, and `edits.object` is what the next
mutator sees. No deep copy of the object and no diff of two objects: a change costs what it
touches.

Operations are the ones the API server's JSON Patch library applies exactly: `add` (a field,
or a list element at an index up to the list's length) and `replace`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Op = dict[str, Any]
Token = str | int
FieldPath = tuple[Token, ...]  # keys and list indices from the root, e.g. ("spec", "x", 0)


_POINTERS: dict[FieldPath, str] = {}  # mutators write the same few paths request after request


def pointer(path: FieldPath) -> str:
    """The RFC 6901 JSON Pointer of a path of keys and list indices."""
    found = _POINTERS.get(path)
    if found is None:
        found = "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in path)
        if len(_POINTERS) >= 4096:
            _POINTERS.clear()
        _POINTERS[path] = found
    return found


class Edits:
    """A mutator's changes to one object, as operations and as the object they make."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.object = obj
        self.ops: list[Op] = []
        # Copy-on-write: a container is copied the first time a write passes through it and
        # written in place after that. `_owned` keeps each copy alive (so its id stays its
        # own); `_chain` holds the copies along the last write's parent path, `_parent`.
        self._owned: dict[int, Any] = {}
        self._parent: FieldPath = ()
        self._chain: list[Any] = []

    def get(self, path: Sequence[Token]) -> Any:
        """The value at `path` in the edited object, or None where the path does not lead."""
        node: Any = self.object
        for part in path:  # inline, not a call per step: mutators read many paths per request
            kind = type(node)
            if kind is dict:
                node = node.get(part)
                if node is None:
                    return None
            elif kind is list and type(part) is int and 0 <= part < len(node):
                node = node[part]
            else:
                return None
        return node

    def set(self, path: FieldPath, value: Any) -> bool:
        """Set a field or list element to `value`, adding the missing objects above it in one
        operation. False (and no operation) when it already has that value."""
        node = self.get(path[:-1])
        if node is None:  # objects missing from some depth down: add them whole
            depth = next(d for d in range(len(path)) if self.get(path[: d + 1]) is None)
            for missing in reversed(path[depth + 1 :]):
                value = {missing: value}
            self._write("add", path[: depth + 1], value)
            return True
        last = path[-1]
        if isinstance(node, dict):
            exists = last in node
        else:
            exists = isinstance(node, list) and isinstance(last, int) and 0 <= last < len(node)
        if exists and node[last] == value:
            return False
        self._write("replace" if exists else "add", path, value)
        return True

    def insert(self, path: FieldPath, value: Any, *, index: int | None = None) -> None:
        """Insert `value` into the list at `path` (at `index`, else at the end); a missing
        list is added holding just `value`."""
        items = self.get(path)
        if items is None:
            self.set(path, [value])
            return
        if not isinstance(items, list):
            raise TypeError(f"{pointer(path)} is not a list")
        self._write("add", (*path, len(items) if index is None else index), value)

    def _write(self, op: str, path: FieldPath, value: Any) -> None:
        parent, last = path[:-1], path[-1]
        owned = self._owned
        if self._chain:
            # The copies along the part of this parent path shared with the last write's are
            # still where they were: a write changes only its parent's entry `last`.
            shared = 0
            for mine, theirs in zip(parent, self._parent, strict=False):
                if mine != theirs:
                    break
                shared += 1
            chain = self._chain[: shared + 1]
        else:
            shared, chain = 0, [self._own(self.object)]
        node = chain[-1]
        for part in parent[shared:]:
            try:
                child = node[part]
            except (KeyError, IndexError, TypeError):
                raise KeyError(f"{pointer(path)}: no {part!r} to write through") from None
            if id(child) not in owned:
                child = node[part] = self._own(child)
            chain.append(child)
            node = child
        if type(node) is list:
            if type(last) is not int or not 0 <= last < len(node) + (op == "add"):
                raise IndexError(f"{pointer(path)}: index out of range")
            if op == "add":
                node.insert(last, value)
            else:
                node[last] = value
        elif type(node) is dict:
            node[last] = value
        else:
            raise TypeError(f"{pointer(path)}: cannot write inside a {type(node).__name__}")
        self.object = chain[0]
        self._parent, self._chain = parent, chain
        self.ops.append({"op": op, "path": pointer(path), "value": value})

    def _own(self, container: Any) -> Any:
        kind = type(container)
        if kind is not dict and kind is not list:
            raise TypeError(f"cannot write inside a {kind.__name__}")
        copied = container.copy()
        self._owned[id(copied)] = copied
        return copied
