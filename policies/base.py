"""The vocabulary every policy speaks: what it sees, what it is given, what it answers.

A policy is a pair of pure functions (mutate and/or validate) over a `Review`. It never
looks at its own mode: the engine turns a `Result` into a denial, a warning, an audit
record or a patch in one place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from policies.edits import Edits
from policies.modes import FailureMode, Mode

if TYPE_CHECKING:
    from policies.request import AdmissionRequest
    from policies.view import ClusterView


class Settings(Protocol):
    """What policies read of the configuration (`policies.config.Config` is one). A protocol,
    so the vocabulary needs nothing of the config, which needs the registry of policies."""

    def is_break_glass(self, username: str, groups: list[str]) -> bool: ...

    def retention_delete_for(self, namespace: str) -> str: ...

    def storage_class_for(self, namespace: str) -> str | None: ...

    def disruption_budgets_for(self, namespace: str) -> bool: ...

    @property
    def server_id_image(self) -> str: ...

    @property
    def break_glass_annotations(self) -> bool: ...

    @property
    def longest_exception(self) -> dt.timedelta: ...


@dataclass(frozen=True, slots=True)
class Match:
    """A kind of request a policy sees, in the terms of a webhook rule."""

    group: str
    resource: str
    operations: frozenset[str]
    subresource: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a policy has to say.

    `message` is the full sentence (object, rule, fix) used in denials and logs; `short` is
    the one-line form (at most ~90 characters) used where space is tight: warnings and
    audit annotations, which the engine prefixes with `[policy-id] would deny:` and the like.
    """

    message: str
    short: str
    # A refusal that passes once the cluster changes (a member ready again): answered with
    # HTTP 429, so `kubectl drain` and autoscalers wait and retry, as they do for a PDB.
    retry: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """What a policy answers. Empty means: nothing to say, allow."""

    denials: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    changes: tuple[str, ...] = ()  # what a mutator changed, e.g. `set spec.serviceName to db`
    undecided: tuple[Finding, ...] = ()  # could not judge: the failure mode decides

    @staticmethod
    def allow() -> Result:
        return _ALLOW

    @staticmethod
    def deny(message: str, *, short: str, retry: bool = False) -> Result:
        return Result(denials=(Finding(message, short, retry),))

    @staticmethod
    def warn(message: str, *, short: str | None = None) -> Result:
        return Result(warnings=(Finding(message, short or message),))

    @staticmethod
    def changed(*changes: str) -> Result:
        return Result(changes=changes)

    @staticmethod
    def cannot_decide(message: str, *, short: str | None = None) -> Result:
        return Result(undecided=(Finding(message, short or message),))

    @staticmethod
    def merge(results: list[Result]) -> Result:
        """All of them in one: one concatenation per field, where `a + b + c ...` would copy
        every tuple again at each step (a set with thousands of findings)."""
        if not results:
            return _ALLOW
        if len(results) == 1:
            return results[0]
        return Result(
            tuple(f for r in results for f in r.denials),
            tuple(f for r in results for f in r.warnings),
            tuple(c for r in results for c in r.changes),
            tuple(f for r in results for f in r.undecided),
        )

    def __add__(self, other: Result) -> Result:
        return Result(
            self.denials + other.denials,
            self.warnings + other.warnings,
            self.changes + other.changes,
            self.undecided + other.undecided,
        )


_ALLOW = Result()


@dataclass(slots=True)
class Review:
    """What a policy is given: the request, the object under review, the cluster, the config.

    `object` is the request's object (for a mutator: as the mutators before it changed it).
    It is shared, so no policy edits it: a mutator makes its changes through `edits`, as
    JSON Patch operations, and the engine adopts them when the policy's mode is enforce.
    """

    request: AdmissionRequest
    object: dict[str, Any] | None
    view: ClusterView
    config: Settings
    clock: Callable[[], dt.datetime]  # the engine's: the time GuardExceptions are judged by
    _edits: Edits | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def edits(self) -> Edits:
        """Where a mutator changes `object` (made on first use)."""
        if self._edits is None:
            self._edits = Edits(self.object if self.object is not None else {})
        return self._edits

    @property
    def edited(self) -> Edits | None:
        """The mutator's edits, if it made any."""
        return self._edits if self._edits is not None and self._edits.ops else None

    @property
    def namespace(self) -> str:
        return self.request.namespace

    @property
    def now(self) -> dt.datetime:
        """The engine's time (tests set theirs), for the few policies that read time."""
        return self.clock()


PolicyFunc = Callable[[Review], Result]


@dataclass(frozen=True, slots=True)
class Policy:
    id: str  # stable kebab-case: config key, message prefix, metric label
    rationale: str  # one line: the failure it prevents
    matches: tuple[Match, ...]
    mutate: PolicyFunc | None = None
    validate: PolicyFunc | None = None
    default_mode: Mode = Mode.ENFORCE
    default_failure_mode: FailureMode = FailureMode.OPEN
    # Guards data (force-delete, pvc-protection, quorum): never skipped by an object's
    # `stateful-guard.io/skip` annotation; each has its own break-glass rules instead.
    guards_data: bool = False
    # Whether a GuardException can let a request past it (not the check of exceptions).
    exceptable: bool = True

    @property
    def mutates(self) -> bool:
        return self.mutate is not None
