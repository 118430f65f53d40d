"""The configuration file: validated whole, errors name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from policies.config import Config, ConfigError
from policies.modes import FailureMode, Mode
from policies.registry import BY_ID

FULL = """
policies:
  force-delete: {mode: enforce, failureMode: closed}
  storage-class: {mode: warn}
namespaces:
  payments:
    mode: audit
    storageClass: fast-ssd
    policies:
      headless-service: {mode: "off"}
breakGlass:
  users: [oncall@example.com]
  groups: ["sre:break-glass"]
serverId:
  image: registry.example.com/busybox:1.37
"""


def test_full_config() -> None:
    config = Config.from_yaml(FULL)
    assert config.policy_mode(BY_ID["storage-class"]) is Mode.WARN
    assert config.policy_mode(BY_ID["headless-service"]) is Mode.ENFORCE
    assert config.failure_mode(BY_ID["force-delete"]) is FailureMode.CLOSED
    assert config.storage_class_for("payments") == "fast-ssd"
    assert config.storage_class_for("other") is None
    assert config.is_break_glass("oncall@example.com", [])
    assert config.is_break_glass("x", ["sre:break-glass"])
    assert not config.is_break_glass("x", ["sre"])
    assert config.server_id.image == "registry.example.com/busybox:1.37"
    assert config.namespaces["payments"].policies["headless-service"].mode is Mode.OFF


def test_empty_file_is_the_default() -> None:
    assert Config.from_yaml("") == Config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "policies:\n  force-delet: {mode: warn}\n",
            "policies: Value error, unknown policy id force-delet",
            id="unknown-policy",
        ),
        pytest.param(
            "policies:\n  force-delete: {mode: warning}\n",
            "policies.force-delete.mode: Input should be 'off', 'audit', 'warn' or 'enforce'",
            id="bad-mode",
        ),
        pytest.param(
            "policies:\n  force-delete: {failureMode: ignore}\n",
            "policies.force-delete.failureMode",
            id="bad-failure-mode",
        ),
        pytest.param(
            "namespaces:\n  db: {storageclass: fast}\n",
            "namespaces.db.storageclass: Extra inputs are not permitted",
            id="typo-key",
        ),
        pytest.param(
            "namespaces:\n  db:\n    policies: {quorom: {mode: warn}}\n",
            "namespaces.db.policies: Value error, unknown policy id quorom",
            id="unknown-policy-in-namespace",
        ),
        pytest.param("breakGlass: {users: alice}\n", "breakGlass.users", id="users-not-a-list"),
        pytest.param("- a\n- b\n", "must be a mapping, got list", id="not-a-mapping"),
        pytest.param("policies: [\n", ":2:1: not valid YAML: expected the node", id="not-yaml"),
        pytest.param(
            "policies: {force-delete: {mode: off}}\n",
            'read false: quote it ("off"), YAML reads off, on, yes and no as booleans',
            id="unquoted-off",
        ),
        pytest.param(
            "policies: {force-delete: {mode: strict}}\n", "enforce'; read 'strict'", id="value"
        ),
    ],
)
def test_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        Config.from_yaml(text, source="stateful-guard.yaml")
    assert str(error.value).startswith("stateful-guard.yaml:")
    assert message in str(error.value)
    assert "\n" not in str(error.value) and "<unicode string>" not in str(error.value)


def test_serve_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("policies:\n  force-delete: {mode: warning}\n")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook.cli",
            "serve",
            "--ops-listen",
            "127.0.0.1:0",
            "--config",
            str(bad),
            "--cert-dir",
            str(tmp_path / "certs"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert f"stateful-guard: {bad}: policies.force-delete.mode" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "certs").exists(), "nothing starts on a bad config"


def test_a_profile_is_read_over_the_shipped_file_key_by_key() -> None:
    config = Config.from_layers(
        [
            ("config.yaml", FULL),
            (
                "profile.yaml",
                "disruptionBudgets: true\n"
                "policies: {storage-class: {mode: enforce}}\n"
                "namespaces: {scratch: {disruptionBudgets: false}}\n"
                "breakGlass: {users: [other@example.com]}\n",
            ),
        ]
    )
    assert config.policy_mode(BY_ID["storage-class"]) is Mode.ENFORCE, "the profile's"
    assert config.failure_mode(BY_ID["force-delete"]) is FailureMode.CLOSED, "kept: merged"
    assert config.storage_class_for("payments") == "fast-ssd"
    assert config.disruption_budgets_for("payments") is True
    assert config.disruption_budgets_for("scratch") is False
    assert config.is_break_glass("other@example.com", [])
    assert not config.is_break_glass("oncall@example.com", []), "a list is replaced, not merged"
    assert Config().disruption_budgets_for("payments") is False, "off by default"


def test_an_error_names_the_files_and_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^a\.yaml \+ b\.yaml: disruptionBudgets: "):
        Config.from_layers([("a.yaml", FULL), ("b.yaml", "disruptionBudgets: sometimes")])
    with pytest.raises(ConfigError, match=r"^b\.yaml: must be a mapping"):
        Config.from_layers([("a.yaml", FULL), ("b.yaml", "- x")])
