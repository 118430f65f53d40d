"""The engine: runs the policies that match a request and applies modes in one place.

Every path that judges objects comes through here: the webhook's /mutate and /validate,
the offline and live audits, the tests. A policy returns a `Result`; `_Verdicts.apply` turns
it into a denial, a warning, an audit annotation or an adopted mutation according to the
policy's effective mode, and nothing else looks at modes.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from policies import exceptions
from policies.base import Finding, Policy, PolicyFunc, Result, Review
from policies.config import Config, NamespaceSettings
from policies.edits import Op
from policies.exceptions import GuardException
from policies.modes import FailureMode, Mode
from policies.registry import POLICIES
from policies.request import AdmissionRequest
from policies.view import ClusterView

log = logging.getLogger("stateful_guard.engine")

MODE_LABEL = "stateful-guard.io/mode"
SKIP_ANNOTATION = "stateful-guard.io/skip"
WARNING_LIMIT = 120  # the API server drops longer warnings' tails; keep each one line
WARNINGS_TOTAL_LIMIT = 4000  # past 4096 runes in all the API server truncates them
AUDIT_LIMIT = 1000
# What one request can make us say or do, whatever its size (a set of 20,000 containers):
FINDINGS_LIMIT = 20  # per policy; past it the first ones are kept and the rest counted
PATCH_LIMIT = 1000  # operations per request; a mutator past it is undecided, not adopted
MESSAGE_LIMIT = 4000  # characters of a denial's status.message

Phase = Literal["mutate", "validate"]
Chain = tuple[tuple[Policy, Mode, FailureMode], ...]  # policy, effective mode, failure mode
Decision = Literal["allow", "deny", "patch", "warn", "audit", "error", "skip", "excepted"]
Clock = Callable[[], dt.datetime]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SHORT_KINDS = {"PersistentVolumeClaim": "PVC"}  # as the policies' messages say it


def one_line(text: str, limit: int = WARNING_LIMIT) -> str:
    """Text as a single line of at most `limit` characters (no control characters)."""
    text = _CONTROL.sub(" ", text)
    if not text.isprintable():  # the API server drops warnings with unprintable characters
        text = "".join(c if c.isprintable() else " " for c in text)
    text = text.strip()
    # ASCII "...": warnings travel in HTTP Warning headers, where other characters get mangled.
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


class Verdict(NamedTuple):
    """What one policy decided for one request, after its mode: for logs, metrics and audits.

    `refusals` are enforced denials; `warnings` what the user was warned of (in warn mode,
    the would-be denials too); `changes` what was (enforce) or would be (warn, audit) mutated;
    `audits` what audit mode recorded; `denied` the one-line form of what the policy denies
    or, in warn and audit modes, would deny (Events record it), or what a GuardException let
    past it, named in `excepted` (`namespace/name`). (A named tuple: made for every policy
    that speaks, on every request, at a third of a frozen dataclass's cost.)"""

    policy: str
    mode: Mode
    decision: Decision
    refusals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()
    audits: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()
    excepted: str = ""

    @property
    def messages(self) -> tuple[str, ...]:
        return self.refusals + self.warnings + self.changes + self.audits


@dataclass(slots=True)
class Outcome:
    """The engine's answer for one request, ready for the wire or an audit report."""

    allowed: bool = True
    message: str = ""
    code: int = 403  # of a denial: 429 when every refusal passes once the cluster changes
    patch: list[Op] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    audit_annotations: dict[str, str] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    object: dict[str, Any] | None = None  # the object after enforced mutations


_ALLOWED: dict[tuple[str, Mode], Verdict] = {}


class _Verdicts:
    """Collects results, turning each into its mode's effect (the one place modes apply)."""

    def __init__(self) -> None:
        self.outcome = Outcome()
        self._denials: list[str] = []
        self._retry_only = True  # every refusal so far is Finding.retry
        self._warning_chars = 0
        self._dropped_warnings = 0

    def apply(
        self,
        policy: Policy,
        mode: Mode,
        failure: FailureMode,
        result: Result,
        waiver: Waiver | None = None,
    ) -> None:
        denials, warnings, changes = result.denials, result.warnings, result.changes
        if len(denials) + len(warnings) > FINDINGS_LIMIT:
            denials, warnings = _capped(denials, warnings)
        if waiver is not None:
            self._waive(policy, waiver)
        if not (denials or warnings or changes or result.undecided or waiver):
            # nothing to say, as most policies for most requests: one shared verdict
            verdict = _ALLOWED.get((policy.id, mode))
            if verdict is None:
                verdict = _ALLOWED[policy.id, mode] = Verdict(policy.id, mode, "allow")
            self.outcome.verdicts.append(verdict)
            return
        errors = tuple(_undecided(policy, failure, f) for f in result.undecided)
        if errors and failure is FailureMode.CLOSED:
            denials += errors
        elif errors:
            warnings += errors

        # Each message list is built only when there is something to put in it: a mutator
        # that made changes (the usual case) says nothing else.
        pid = policy.id
        refusals: tuple[str, ...] = ()
        warned: tuple[str, ...] = ()
        audits: tuple[str, ...] = ()
        if mode is Mode.ENFORCE:
            if denials:
                refusals = tuple([f"[{pid}] {d.message}" for d in denials])
            if warnings:
                warned = tuple([f"[{pid}] {w.short}" for w in warnings])
        elif mode is Mode.WARN:
            warned = (
                *[f"[{pid}] would deny: {d.short}" for d in denials],
                *[f"[{pid}] {w.short}" for w in warnings],
                *[f"[{pid}] would {c}" for c in changes],
            )
        else:  # audit
            audits = (
                *[f"would deny: {d.short}" for d in denials],
                *[w.short for w in warnings],
                *[f"would {c}" for c in changes],
            )
            if audits:
                # The API server prefixes the key with "<webhook name>/"; an id is a valid name.
                self.outcome.audit_annotations[pid] = one_line("; ".join(audits), AUDIT_LIMIT)
        if refusals:
            self._denials += refusals
            self._retry_only = self._retry_only and all(d.retry for d in denials)
        for line in warned:
            self._warn(line)
        decision: Decision = (
            "deny"
            if refusals
            else "error"
            if errors
            else "excepted"
            if waiver
            else "audit"
            if audits
            else "patch"
            if changes and mode is Mode.ENFORCE
            else "warn"
            if warned
            else "allow"
        )
        denied = tuple([d.short for d in denials]) if denials else ()
        excepted = ""
        if waiver is not None:
            warned = (*warned, waiver.line)
            denied, excepted = tuple([d.short for d in waiver.denials]), waiver.exception.ref
        self.outcome.verdicts.append(
            Verdict(pid, mode, decision, refusals, warned, changes, audits, denied, excepted)
        )

    def _waive(self, policy: Policy, waiver: Waiver) -> None:
        """A GuardException let the request past the policy's denials: said to the user in a
        warning and to the audit log in an annotation, whatever the mode."""
        self._warn(waiver.line)
        exception = waiver.exception
        self.outcome.audit_annotations[f"{policy.id}.exception"] = one_line(
            f"{exception.ref} ({exception.reason})", AUDIT_LIMIT
        )

    def skip(self, policy: Policy, mode: Mode, subject: str) -> None:
        """The object opted out of this policy: said in a warning, counted, never silent."""
        line = f"[{policy.id}] skipped: {subject} is annotated {SKIP_ANNOTATION}={policy.id}"
        self._warn(line)
        self.outcome.verdicts.append(Verdict(policy.id, mode, "skip", warnings=(line,)))

    def _warn(self, line: str) -> None:
        line = one_line(line)
        if self._warning_chars + len(line) > WARNINGS_TOTAL_LIMIT:
            self._dropped_warnings += 1  # still in the verdict, so logged
            return
        self._warning_chars += len(line)
        self.outcome.warnings.append(line)

    def finish(self) -> Outcome:
        outcome = self.outcome
        if self._dropped_warnings:
            outcome.warnings.append(
                f"[stateful-guard] {self._dropped_warnings} more warnings omitted; see the logs"
            )
        if self._denials:
            outcome.allowed = False
            outcome.code = 429 if self._retry_only else 403
            message = " ".join(self._denials)
            if len(message) > MESSAGE_LIMIT:
                message = message[: MESSAGE_LIMIT - 30].rstrip() + " ... (cut; see the logs)"
            outcome.message = message
        return outcome


class Waiver(NamedTuple):
    """The denials a GuardException lets a request past, the exception, and the warning that
    says so."""

    denials: tuple[Finding, ...]
    exception: GuardException
    line: str


def _capped(
    denials: tuple[Finding, ...], warnings: tuple[Finding, ...]
) -> tuple[tuple[Finding, ...], tuple[Finding, ...]]:
    """At most FINDINGS_LIMIT findings, denials first; one more says how many were left out
    (a denial stays a denial: cutting never turns a refusal into an allow)."""
    kept_denials = denials[:FINDINGS_LIMIT]
    kept_warnings = warnings[: FINDINGS_LIMIT - len(kept_denials)]
    left = len(denials) + len(warnings) - len(kept_denials) - len(kept_warnings)
    more = Finding(f"and {left} more findings like these.", f"and {left} more findings")
    if kept_denials:
        return (*kept_denials, more), kept_warnings
    return kept_denials, (*kept_warnings, more)


def _undecided(policy: Policy, failure: FailureMode, finding: Finding) -> Finding:
    if failure is FailureMode.CLOSED:
        fix = f"refused because failureMode is closed (policies.{policy.id}.failureMode)"
        short_fix = "refused (fail closed)"
    else:
        fix = "allowed because failureMode is open"
        short_fix = "allowed (fail open)"
    return Finding(f"{finding.message}; {fix}.", f"{finding.short}; {short_fix}")


class Engine:
    """Runs policies over admission requests. Thread-safe and stateless between requests."""

    def __init__(
        self,
        view: ClusterView,
        config: Config | None = None,
        policies: Iterable[Policy] = POLICIES,
        *,
        clock: Clock | None = None,
    ) -> None:
        """`clock` tells the time GuardExceptions are judged by (tests pass their own)."""
        self.view = view
        self.config = config or Config()
        self.clock: Clock = clock or exceptions.utc_now
        self.policies = tuple(policies)
        self._index: dict[tuple[Phase, str, str, str, str], tuple[Policy, ...]] = {}
        phases: tuple[Phase, ...] = ("mutate", "validate")
        for phase in phases:
            for policy in self.policies:
                if getattr(policy, phase) is None:
                    continue
                for match in policy.matches:
                    for op in match.operations:
                        key = (phase, match.group, match.resource, match.subresource, op)
                        self._index[key] = (*self._index.get(key, ()), policy)
        self._chains: dict[tuple[Any, ...], Chain] = {}

    def policies_for(self, phase: Phase, request: AdmissionRequest) -> tuple[Policy, ...]:
        resource = request.resource
        key = (phase, resource.group, resource.resource, request.sub_resource, request.operation)
        return self._index.get(key, ())

    def chain(self, phase: Phase, request: AdmissionRequest) -> Chain:
        """The policies that judge a request, each with its effective mode and failure mode,
        in order, leaving out those that are off. Worked out once per kind of request,
        namespace configuration and namespace mode: only the namespace is looked up each
        time (its label may change)."""
        resource = request.resource
        key = (phase, resource.group, resource.resource, request.sub_resource, request.operation)
        policies = self._index.get(key)
        if not policies:
            return ()
        settings, cap = self._namespace(request.namespace)
        cache_key = (key, request.namespace if settings else "", cap)
        found = self._chains.get(cache_key)
        if found is None:
            found = self._chains[cache_key] = tuple(
                (policy, mode, self.config.failure_mode(policy))
                for policy in policies
                if (mode := self._mode(policy, settings, cap)) is not Mode.OFF
            )
        return found

    def _mode(self, policy: Policy, settings: NamespaceSettings | None, cap: Mode | None) -> Mode:
        """A policy's mode in a namespace: the namespace's override in the config, else its
        configured mode capped by the namespace's mode (config, else label)."""
        if settings and policy.id in settings.policies:
            return settings.policies[policy.id].mode
        mode = self.config.policy_mode(policy)
        return mode.capped_by(cap) if cap else mode

    def mode_for(self, policy: Policy, namespace: str) -> Mode:
        return self._mode(policy, *self._namespace(namespace))

    def _namespace(self, namespace: str) -> tuple[NamespaceSettings | None, Mode | None]:
        """A namespace's settings in the config, and its mode cap (config, else label)."""
        settings = self.config.namespaces.get(namespace)
        cap = settings.mode if settings and settings.mode else None
        if cap is None and namespace:
            cap = _label_mode(self.view.namespace_labels(namespace))
        return settings, cap

    def mutate(self, request: AdmissionRequest) -> Outcome:
        """Run the mutators in order, each seeing the object as the ones before changed it.

        An enforced mutator's edits are adopted (its operations join the patch, its edited
        object is what the next one sees) unless it refused or could not decide; warn and
        audit mutators only report what they would change. No object is edited in place.
        """
        current = request.object
        patch: list[Op] = []
        verdicts = _Verdicts()
        skips = _skips(request)
        for policy, mode, failure in self.chain("mutate", request):
            if skips and policy.id in skips and not policy.guards_data:
                verdicts.skip(policy, mode, _subject(request))
                continue
            review = Review(request, current, self.view, self.config, self.clock)
            result, waiver = self._excepted(
                policy, request, self._run(policy, policy.mutate, review)
            )
            edited = review.edited
            if edited and len(patch) + len(edited.ops) > PATCH_LIMIT:
                result = Result.cannot_decide(
                    f"{policy.id} would change {len(edited.ops)} fields of {_subject(request)}, "
                    f"more than the {PATCH_LIMIT} one request may",
                    short=f"{_subject(request)}: {len(edited.ops)} changes, over the limit",
                )
                edited = None
            if edited and mode is Mode.ENFORCE and not (result.denials or result.undecided):
                current = edited.object
                patch.extend(edited.ops)
            verdicts.apply(policy, mode, failure, result, waiver)
        outcome = verdicts.finish()
        outcome.object = current
        if outcome.allowed:
            outcome.patch = patch
        return outcome

    def validate(self, request: AdmissionRequest) -> Outcome:
        verdicts = _Verdicts()
        skips = _skips(request)
        for policy, mode, failure in self.chain("validate", request):
            if skips and policy.id in skips and not policy.guards_data:
                verdicts.skip(policy, mode, _subject(request))
                continue
            review = Review(request, request.object, self.view, self.config, self.clock)
            result, waiver = self._excepted(
                policy, request, self._run(policy, policy.validate, review)
            )
            if skips and policy.id in skips:  # guards data: the annotation does not apply
                result += Result.warn(
                    f"{SKIP_ANNOTATION} cannot skip {policy.id}, which guards data; "
                    "see its own break-glass rule"
                )
            verdicts.apply(policy, mode, failure, result, waiver)
        outcome = verdicts.finish()
        outcome.object = request.object
        return outcome

    def admit(self, request: AdmissionRequest) -> Outcome:
        """Both phases as the API server runs them: mutate, then validate the mutated object."""
        mutated = self.mutate(request)
        if not mutated.allowed:
            return mutated
        if mutated.object is not request.object:
            request = request.model_copy(update={"object": mutated.object})
        validated = self.validate(request)
        validated.patch = mutated.patch
        validated.warnings[:0] = mutated.warnings
        validated.audit_annotations = {**mutated.audit_annotations, **validated.audit_annotations}
        validated.verdicts[:0] = mutated.verdicts
        return validated

    def _excepted(
        self, policy: Policy, request: AdmissionRequest, result: Result
    ) -> tuple[Result, Waiver | None]:
        """The one place GuardExceptions apply, for the webhook and both audits alike: a
        policy's denials are waived when an exception in force covers the request's object,
        user and policy (`policies.exceptions.covering`). Warnings, changes and undecided
        findings stand."""
        if not result.denials or not policy.exceptable:
            return result, None
        exception = exceptions.covering(
            self.view,
            request,
            policy.id,
            now=self.clock(),
            longest=self.config.longest_exception,
        )
        if exception is None:
            return result, None
        until = exceptions.stamp(exception.ends(self.config.longest_exception))
        # One line of at most 120 characters: the object and the exception by name (both in
        # the request's namespace); a scale's object is its workload, an eviction's its pod.
        kind = exceptions.TARGET_KINDS.get(request.resource.resource, request.kind.kind)
        line = (
            f"[{policy.id}] {_SHORT_KINDS.get(kind, kind)} {request.object_name}: allowed by "
            f"GuardException {exception.name} until {until}"
        )
        waived = Result(
            warnings=result.warnings, changes=result.changes, undecided=result.undecided
        )
        return waived, Waiver(result.denials, exception, one_line(line))

    def _run(self, policy: Policy, func: PolicyFunc | None, review: Review) -> Result:
        assert func is not None
        try:
            return func(review)
        except Exception as exc:
            # A bug or an object shape we did not foresee: logged with the uid, then decided
            # by the policy's failure mode like any other undecidable request (and a
            # mutator's half-done edits are not adopted: the result is undecided).
            request = review.request
            log.exception(
                "policy raised",
                extra={"policy": policy.id, "uid": request.uid, "error": repr(exc)},
            )
            return Result.cannot_decide(
                f"{policy.id} could not evaluate {request.kind.kind} "
                f"{request.namespace}/{request.object_name} ({type(exc).__name__})",
            )


def _skips(request: AdmissionRequest) -> frozenset[str]:
    """The policy ids the object opts out of (`stateful-guard.io/skip: id[,id]`)."""
    obj = request.object if request.object is not None else request.old_object
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    notes = meta.get("annotations") if isinstance(meta, dict) else None
    raw = notes.get(SKIP_ANNOTATION) if isinstance(notes, dict) else None
    if not isinstance(raw, str):
        return frozenset()
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _subject(request: AdmissionRequest) -> str:
    namespace = f"{request.namespace}/" if request.namespace else ""
    return f"{request.kind.kind} {namespace}{request.object_name}"


_LABEL_MODES = {mode.value: mode for mode in Mode}


def _label_mode(labels: Mapping[str, str]) -> Mode | None:
    """The namespace label's mode, in any case (`Enforce`); None without one, or for a typo
    in it (which therefore does not weaken enforcement)."""
    value = labels.get(MODE_LABEL)
    return _LABEL_MODES.get(value.strip().lower()) if isinstance(value, str) else None
