"""Read Kubernetes objects from manifest files: multi-document YAML, JSON, `List` kinds.

Used for the cluster view of `--objects` and by the audits. Errors name the file and line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

try:  # libyaml is several times faster when the wheel has it
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - depends on the platform's wheel
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

SUFFIXES = (".yaml", ".yml", ".json")

_TAG = "tag:yaml.org,2002:"
_MAP, _SEQ, _STR = f"{_TAG}map", f"{_TAG}seq", f"{_TAG}str"
_PLAIN_SCALARS = frozenset(f"{_TAG}{name}" for name in ("null", "bool", "int", "float"))


class _Unusual(Exception):
    """A document the quick builder leaves to PyYAML's constructor."""


class ManifestLoader(_SafeLoader):
    """PyYAML's safe loader (YAML 1.1, as kubectl reads manifests), twice as fast on them.

    PyYAML spends most of a manifest's time in its Python constructor and resolver, not in
    libyaml: so plain scalars' tags are remembered by value, and documents made only of maps,
    sequences, strings, numbers, booleans and nulls (manifests) are built in one pass. A
    document with anything else (merge keys, explicit tags like `!!binary`, recursive
    aliases) goes to PyYAML's constructor, so every document reads exactly as `safe_load`
    reads it (tested against it).
    """

    _plain_tags: ClassVar[dict[str, str]] = {}  # a plain scalar's tag depends on its text alone

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is not ScalarNode or not implicit[0] or len(value) > 64:
            return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]
        tag = self._plain_tags.get(value)
        if tag is None:
            tag = str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]
            if len(self._plain_tags) < 10_000:
                self._plain_tags[value] = tag
        return tag

    def construct_document(self, node: Node) -> Any:
        try:
            return self._build(node, {})
        except _Unusual:
            return super().construct_document(node)

    def _build(self, node: Node, built: dict[int, Any]) -> Any:
        if node.__class__ is ScalarNode:
            if node.tag == _STR:
                return node.value
            if node.tag in _PLAIN_SCALARS:
                return self.yaml_constructors[node.tag](self, node)
            raise _Unusual
        # An alias is the same node again: build it once, share it (as PyYAML does).
        done = built.get(id(node))
        if done is not None:
            if done is built:  # still being built: a recursive structure
                raise _Unusual
            return done
        built[id(node)] = built
        result: Any
        if node.__class__ is MappingNode and node.tag == _MAP:
            result = {}
            for key, value in node.value:
                if key.__class__ is not ScalarNode:  # PyYAML's errors for unhashable keys
                    raise _Unusual
                result[self._build(key, built)] = self._build(value, built)
        elif node.__class__ is SequenceNode and node.tag == _SEQ:
            result = [self._build(item, built) for item in node.value]
        else:
            raise _Unusual
        built[id(node)] = result
        return result


class ManifestError(ValueError):
    """An unreadable manifest; the message names the file (and line where known)."""

    def __init__(self, message: str, *, source: str = "", line: int = 1) -> None:
        super().__init__(message)
        self.source = source
        self.line = line


@dataclass(frozen=True, slots=True)
class Manifest:
    object: dict[str, Any]
    source: str  # file path, or "-" for standard input
    index: int  # the document's position in its file (List items share their document's)
    line: int = 1  # where that document starts (1-based)
    item: int = 0  # its place in a List document (1-based), 0 for a plain object


def load(
    paths: Iterable[str | Path], *, unreadable: list[ManifestError] | None = None
) -> list[Manifest]:
    """Every object in the given files and directories (recursively), in a stable order.

    A file that cannot be read raises ManifestError; with `unreadable`, one found in a
    directory is added there instead and the rest are read (a chart's templates beside its
    rendered manifests)."""
    manifests: list[Manifest] = []
    for path in paths:
        if str(path) == "-":
            if sys.stdin is None or sys.stdin.closed:
                raise ManifestError("-: standard input is closed; pipe the manifests in")
            manifests.extend(parse(sys.stdin.read(), source="-"))
            continue
        # Files found in a directory may be other YAML (a chart's Chart.yaml, values.yaml):
        # their documents without a kind are skipped; a file named explicitly must be manifests.
        in_directory = Path(path).is_dir()
        for file in _files(Path(path)):
            try:
                manifests.extend(_read(file, strict=not in_directory))
            except ManifestError as exc:
                if unreadable is None or not in_directory:
                    raise
                unreadable.append(exc)
    return manifests


def _read(file: Path, *, strict: bool) -> list[Manifest]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{file}: cannot read: {exc}", source=str(file)) from exc
    try:
        return parse(text, source=str(file), strict=strict)
    except ManifestError as exc:
        if "{{" in text:  # a Helm template is not YAML until rendered
            raise ManifestError(
                f"{exc} (a Helm template: audit `helm template RELEASE CHART` output instead)",
                source=str(file),
                line=exc.line,
            ) from None
        raise


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    elif path.exists():
        yield path
    else:
        raise ManifestError(f"{path}: no such file or directory")


def parse(text: str, *, source: str, strict: bool = True) -> list[Manifest]:
    """The objects in one file's text. JSON is YAML, so one parser reads both."""
    manifests: list[Manifest] = []
    if text.lstrip()[:1] in ("{", "["):  # JSON (kubectl get -o json): orjson is far faster
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # not JSON after all (a YAML flow mapping): read it as YAML
        else:
            return [
                Manifest(obj, source, 0, 1, item)
                for obj, item in _flatten(doc, source, 0, 1, strict=strict)
            ]
    starts = _document_lines(text)
    try:
        for index, doc in enumerate(yaml.load_all(text, Loader=ManifestLoader)):
            line = starts[index] if index < len(starts) else 1
            for obj, item in _flatten(doc, source, index, line, strict=strict):
                manifests.append(Manifest(obj, source, index, line, item))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        where = f":{line}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(
            f"{source}{where}: not valid YAML or JSON: {problem}", source=source, line=line
        ) from None
    return manifests


def _document_lines(text: str) -> list[int]:
    """The line each YAML document's content starts on: the first line after each `---`
    (and from the top) that is neither blank nor a comment, as `helm template` writes a
    `# Source:` header above each. (Cheaper than a second parse for marks.)"""
    lines = text.splitlines()
    starts = [] if lines and lines[0].startswith("---") else [0]
    starts += [n + 1 for n, line in enumerate(lines) if line.startswith("---")]
    found = []
    for start in starts:
        n = start
        while n < len(lines) and (not lines[n].strip() or lines[n].lstrip().startswith("#")):
            n += 1
        found.append(min(n, max(len(lines) - 1, 0)) + 1)
    return found


def _flatten(
    doc: Any, source: str, index: int, line: int, *, strict: bool, item: int = 0
) -> Iterator[tuple[dict[str, Any], int]]:
    """The objects in one document, each with its place in a List (1-based; 0: none)."""
    if doc is None:
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        if not strict:
            return
        what = f"document {index + 1}" + (f", item {item}" if item else "")
        raise ManifestError(
            f"{source}:{line}: {what} is not a Kubernetes object (no kind)",
            source=source,
            line=line,
        )
    if doc["kind"] == "List" or (doc["kind"].endswith("List") and "items" in doc):
        items = doc.get("items") or []
        for number, entry in enumerate(items if isinstance(items, list) else [], start=1):
            for obj, _ in _flatten(entry, source, index, line, strict=strict, item=number):
                yield obj, number
        return
    yield doc, item
