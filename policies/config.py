"""The one configuration file: per-policy modes and failure modes, per-namespace overrides,
break-glass identities (and whether break-glass annotations count), how long a
GuardException may last, and the server-id init image.

Validated whole before anything uses it: an error names the offending key, and there is
never a half-loaded policy set.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from policies.exceptions import parse_duration
from policies.modes import FailureMode, Mode
from policies.registry import POLICY_IDS


class Defaults(Protocol):
    """A policy as the config reads it (`policies.base.Policy` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def default_mode(self) -> Mode: ...

    @property
    def default_failure_mode(self) -> FailureMode: ...


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


def _known_policy_ids(value: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(value) - set(POLICY_IDS))
    if unknown:
        raise ValueError(f"unknown policy id {', '.join(unknown)} (known: {', '.join(POLICY_IDS)})")
    return value


class PolicySettings(_Section):
    mode: Mode | None = None
    failure_mode: FailureMode | None = None


class NamespacePolicySettings(_Section):
    mode: Mode


RetentionDelete = Literal["allow", "refuse"]


class NamespaceSettings(_Section):
    mode: Mode | None = Field(
        default=None, description="caps every policy here; replaces the namespace label"
    )
    storage_class: str | None = Field(default=None, min_length=1)
    retention_delete: RetentionDelete | None = None
    disruption_budgets: bool | None = None
    policies: dict[str, NamespacePolicySettings] = Field(default_factory=dict)

    _check_ids = field_validator("policies")(_known_policy_ids)


class BreakGlass(_Section):
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    # Whether stateful-guard.io/allow-force-delete and allow-data-deletion on an object open
    # its data guard. Off: only GuardExceptions do (reviewable, expiring, recorded).
    annotations: bool = False


class ExceptionSettings(_Section):
    # The longest a GuardException may be in force after its creation (`30m`, `8h`, `7d`).
    max_duration: str = "7d"

    @field_validator("max_duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def longest(self) -> dt.timedelta:
        return parse_duration(self.max_duration)


class ServerIdSettings(_Section):
    image: str = Field(default="busybox:1.37", min_length=1)


class Config(_Section):
    policies: dict[str, PolicySettings] = Field(default_factory=dict)
    namespaces: dict[str, NamespaceSettings] = Field(default_factory=dict)
    break_glass: BreakGlass = Field(default_factory=BreakGlass)
    server_id: ServerIdSettings = Field(default_factory=ServerIdSettings)
    exceptions: ExceptionSettings = Field(default_factory=ExceptionSettings)
    # A set whose persistentVolumeClaimRetentionPolicy says Delete: its owner declared that
    # deleting or scaling it deletes claims. `allow` (default) warns; `refuse` keeps guarding.
    retention_delete: RetentionDelete = "allow"
    # The leader gives each quorum set a PodDisruptionBudget of what its quorum can spare
    # (where quorum is enforced and no budget of the user's selects the set's pods).
    disruption_budgets: bool = False

    _check_ids = field_validator("policies")(_known_policy_ids)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "config") -> Config:
        """Parse and validate a config file's text; raise ConfigError naming the key."""
        return cls.from_layers([(source, text)])

    @classmethod
    def from_layers(cls, layers: list[tuple[str, str]]) -> Config:
        """Several config files' texts (source, text), each later one over the ones before,
        key by key (mappings merge, anything else is replaced): the shipped file, then a
        profile. Validated once, whole; a ConfigError names the file or the key."""
        merged: dict[str, Any] = {}
        for source, text in layers:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from None
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise ConfigError(f"{source}: must be a mapping, got {type(data).__name__}")
            merged = _over(merged, data)
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(_problem(err) for err in exc.errors())
            raise ConfigError(f"{' + '.join(s for s, _ in layers)}: {problems}") from None

    def policy_mode(self, policy: Defaults) -> Mode:
        settings = self.policies.get(policy.id)
        return settings.mode if settings and settings.mode else policy.default_mode

    def failure_mode(self, policy: Defaults) -> FailureMode:
        settings = self.policies.get(policy.id)
        if settings and settings.failure_mode:
            return settings.failure_mode
        return policy.default_failure_mode

    def storage_class_for(self, namespace: str) -> str | None:
        settings = self.namespaces.get(namespace)
        return settings.storage_class if settings else None

    def retention_delete_for(self, namespace: str) -> RetentionDelete:
        settings = self.namespaces.get(namespace)
        if settings and settings.retention_delete:
            return settings.retention_delete
        return self.retention_delete

    def disruption_budgets_for(self, namespace: str) -> bool:
        settings = self.namespaces.get(namespace)
        if settings and settings.disruption_budgets is not None:
            return settings.disruption_budgets
        return self.disruption_budgets

    @property
    def server_id_image(self) -> str:
        return self.server_id.image

    def is_break_glass(self, username: str, groups: list[str]) -> bool:
        return username in self.break_glass.users or not self.break_glass.groups.isdisjoint(groups)

    @property
    def break_glass_annotations(self) -> bool:
        return self.break_glass.annotations

    @property
    def longest_exception(self) -> dt.timedelta:
        return self.exceptions.longest


def _problem(err: Any) -> str:
    """One validation error: the key, what was wrong, the value read. YAML 1.1 reads an
    unquoted off/on/yes/no as a boolean, which is how `mode: off` becomes false."""
    where = ".".join(str(p) for p in err["loc"]) or "<root>"
    value = err.get("input")
    said = f"{where}: {err['msg']}"
    if isinstance(value, bool):
        word = "off" if where.endswith("mode") and value is False else str(value).lower()
        return (
            f'{said}; read {str(value).lower()}: quote it ("{word}"), YAML reads off, on, yes '
            "and no as booleans"
        )
    if value is not None and not isinstance(value, dict | list):
        return f"{said}; read {value!r}"
    return said


def _over(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(under)
    for key, value in over.items():
        below = merged.get(key)
        both = isinstance(below, dict) and isinstance(value, dict)
        merged[key] = _over(below, value) if both else value  # type: ignore[arg-type]
    return merged


DEFAULT_CONFIG = Config()
