"""Read Kubernetes objects from manifest files: multi-document YAML, JSON, `List` kinds.

Used for the cluster view of `--objects` and by the audits. Errors name the file and line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

try:  # libyaml is several times faster when the wheel has it
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the platform's wheel
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(ValueError):
    """An unreadable manifest; the message names the file (and line where known)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    object: dict[str, Any]
    source: str  # file path, or "-" for standard input
    index: int  # the document's position in its file (List items share their document's)
    line: int = 1  # where that document starts (1-based)


def load(paths: Iterable[str | Path]) -> list[Manifest]:
    """Every object in the given files and directories (recursively), in a stable order."""
    manifests: list[Manifest] = []
    for path in paths:
        if str(path) == "-":
            manifests.extend(parse(sys.stdin.read(), source="-"))
            continue
        # Files found in a directory may be other YAML (a chart's Chart.yaml, values.yaml):
        # their documents without a kind are skipped; a file named explicitly must be manifests.
        strict = not Path(path).is_dir()
        for file in _files(Path(path)):
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestError(f"{file}: cannot read: {exc}") from exc
            manifests.extend(parse(text, source=str(file), strict=strict))
    return manifests


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
            return [Manifest(obj, source, 0) for obj in _flatten(doc, source, 0, strict=strict)]
    starts = _document_lines(text)
    try:
        for index, doc in enumerate(yaml.load_all(text, Loader=_Loader)):
            line = starts[index] if index < len(starts) else 1
            for obj in _flatten(doc, source, index, strict=strict):
                manifests.append(Manifest(obj, source, index, line))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(f"{source}{where}: not valid YAML or JSON: {problem}") from None
    return manifests


def _document_lines(text: str) -> list[int]:
    """The line each YAML document starts on: after each `---`, and line 1 unless the text
    opens with one. (Cheaper than a second parse for marks; good for reports.)"""
    lines = text.splitlines()
    starts = [] if lines and lines[0].startswith("---") else [1]
    starts += [n + 2 for n, line in enumerate(lines) if line.startswith("---")]
    return starts


def _flatten(doc: Any, source: str, index: int, *, strict: bool) -> Iterator[dict[str, Any]]:
    if doc is None:
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        if not strict:
            return
        raise ManifestError(f"{source}: document {index} is not a Kubernetes object (no kind)")
    if doc["kind"] == "List" or (doc["kind"].endswith("List") and "items" in doc):
        for item in doc.get("items") or []:
            yield from _flatten(item, source, index, strict=strict)
        return
    yield doc
