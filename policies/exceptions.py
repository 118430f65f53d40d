"""GuardExceptions: who may act past a policy, on which objects, until when, and why.

A GuardException (`stateful-guard.io/v1alpha1`, namespaced, `deploy/base/guardexceptions.yaml`)
is the reviewable, expiring way past a guard: it names policies, objects (names, a label
selector, kinds), who may act under it (empty: anyone), a reason and an expiry. The engine
asks `covering` in one place, for the webhook and both audits alike; the exception comes from
the cluster view (watched, so a new one applies within seconds) or from manifests.

An exception is in force from `notBefore` (if given) until `expiresAt`, and never longer than
the configured maximum after its creation, whatever `expiresAt` says (a write that slipped
past the webhook's check still ends on time). Time is the caller's: the engine passes its
clock, tests pass theirs.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.objects import labels, metadata, selects, spec
from policies.request import AdmissionRequest
from policies.view import GUARD_EXCEPTION, POD, ClusterView

GROUP = "stateful-guard.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURAL = "guardexceptions"
PATH = f"/apis/{API_VERSION}/{PLURAL}"  # every namespace's, as the view lists them
# The kinds an exception can name: what the policies judge (an eviction's is its pod, a
# scale's its workload).
TARGET_KINDS = {
    "pods": "Pod",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "statefulsets": "StatefulSet",
    "deployments": "Deployment",
    "replicasets": "ReplicaSet",
}
_DURATION = re.compile(r"([0-9]+)([dhms])")  # ASCII digits only, as everywhere
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> dt.timedelta:
    """`90m`, `1h30m`, `7d`: whole days, hours, minutes and seconds, at least one second."""
    value = text.strip()
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"expected a duration such as 30m, 1h or 7d, got {text!r}")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    return dt.timedelta(seconds=seconds)


def shown_duration(delta: dt.timedelta) -> str:
    """A duration as people write it: `7d`, `1h30m`, `45s`."""
    seconds = int(delta.total_seconds())
    parts: list[str] = []
    for unit, size in _UNITS.items():
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def parse_time(value: object) -> dt.datetime | None:
    """An RFC 3339 time as the API server writes it (`2026-12-03T17:00:00Z`), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def stamp(when: dt.datetime) -> str:
    """A time as the API server writes it (RFC 3339, UTC, whole seconds)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Target:
    """The object a request acts on, as exceptions name objects."""

    kind: str
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class GuardException:
    namespace: str
    name: str
    policies: frozenset[str]
    kinds: frozenset[str]  # empty: every kind
    names: frozenset[str] | None  # None: not matched by name
    selector: Mapping[str, Any] | None  # None: not matched by labels
    users: frozenset[str]
    groups: frozenset[str]
    reason: str
    expires_at: dt.datetime
    not_before: dt.datetime | None = None
    created: dt.datetime | None = None
    approved_by: str = ""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def ends(self, longest: dt.timedelta) -> dt.datetime:
        """When it stops being in force: its expiry, or creation plus the longest allowed."""
        if self.created is None:
            return self.expires_at
        return min(self.expires_at, self.created + longest)

    def in_force(self, now: dt.datetime, longest: dt.timedelta) -> bool:
        started = self.not_before is None or self.not_before <= now
        return started and now < self.ends(longest)

    def covers(self, policy: str, target: Target, username: str, groups: Iterable[str]) -> bool:
        if policy not in self.policies or (self.kinds and target.kind not in self.kinds):
            return False
        if self.names is None and self.selector is None:
            return False  # names no object (the CRD refuses it; manifests may not)
        if self.names is not None and target.name not in self.names:
            return False
        if self.selector is not None and not selects(self.selector, target.labels):
            return False
        if not (self.users or self.groups):
            return True
        return username in self.users or not self.groups.isdisjoint(groups)


def _strings(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return frozenset(value)


def parse(obj: Mapping[str, Any], default_namespace: str = "") -> GuardException | None:
    """The exception an object holds, or None for one that is malformed (covers nothing).
    The CRD's schema refuses such objects; manifests given to an audit may hold anything."""
    meta, body = metadata(obj), spec(obj)
    match = body.get("match")
    subjects = body.get("subjects") or {}
    expires = parse_time(body.get("expiresAt"))
    reason = body.get("reason")
    if not isinstance(match, dict) or not isinstance(subjects, dict) or expires is None:
        return None
    if not isinstance(reason, str) or not reason.strip():
        return None
    selector = match.get("selector")
    try:
        policies = _strings(body.get("policies")) or frozenset()
        exception = GuardException(
            namespace=str(meta.get("namespace") or default_namespace),
            name=str(meta.get("name") or ""),
            policies=policies,
            kinds=_strings(match.get("kinds")) or frozenset(),
            names=_strings(match.get("names")),
            selector=selector if isinstance(selector, dict) else None,
            users=_strings(subjects.get("users")) or frozenset(),
            groups=_strings(subjects.get("groups")) or frozenset(),
            reason=reason.strip(),
            expires_at=expires,
            not_before=parse_time(body.get("notBefore")),
            created=parse_time(meta.get("creationTimestamp")),
            approved_by=str(body.get("approvedBy") or ""),
        )
    except ValueError:
        return None
    if body.get("notBefore") is not None and exception.not_before is None:
        return None  # an unreadable start: not "in force from the beginning"
    return exception


# The flags of `stateful-guard exception create` that name objects, by kind (`--claim`).
FLAGS = {
    "pod": "Pod",
    "claim": "PersistentVolumeClaim",
    "statefulset": "StatefulSet",
    "deployment": "Deployment",
    "replicaset": "ReplicaSet",
}
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def manifest(
    *,
    namespace: str,
    policies: Sequence[str],
    kind: str,
    names: Sequence[str],
    reason: str,
    now: dt.datetime,
    lasting: dt.timedelta,
    users: Sequence[str] = (),
    groups: Sequence[str] = (),
    approved_by: str = "",
) -> dict[str, Any]:
    """A GuardException for `names` (of one kind in one namespace), in force from now for
    `lasting`: what `stateful-guard exception create` prints or applies."""
    if not reason.strip():
        raise ValueError("a reason is required: say why, for whoever reads it later")
    for name in (namespace, *names):
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a Kubernetes object name")
    first = names[0] if len(names) == 1 else f"{len(names)}-{kind.lower()}s"
    name = f"{'-'.join(sorted(policies))}-{first}"[:52].strip("-.")
    body: dict[str, Any] = {
        "policies": sorted(policies),
        "match": {"kinds": [kind], "names": sorted(names)},
        "reason": reason.strip(),
        "expiresAt": stamp(now + lasting),
    }
    if users or groups:
        body["subjects"] = {
            **({"users": list(users)} if users else {}),
            **({"groups": list(groups)} if groups else {}),
        }
    if approved_by:
        body["approvedBy"] = approved_by
    return {
        "apiVersion": API_VERSION,
        "kind": GUARD_EXCEPTION,
        # a unique suffix: the same exception written again is a new one, reviewed again
        "metadata": {"name": f"{name}-{now.strftime('%m%d%H%M%S')}", "namespace": namespace},
        "spec": body,
    }


def target_of(request: AdmissionRequest, view: ClusterView) -> Target | None:
    """What the request acts on: the object (the one deleted, for a DELETE), an eviction's
    pod or a scale's workload as the view holds them (the request carries no labels)."""
    resource = request.resource.resource
    kind = TARGET_KINDS.get(resource)
    if kind is None:
        return None
    name = request.object_name
    if request.sub_resource in ("eviction", "scale"):
        held = view.get(POD if kind == "Pod" else kind, request.namespace, name)
        return Target(kind, name, labels(held))
    obj = request.old_object if request.operation == "DELETE" else request.object
    return Target(kind, name, labels(obj))


def in_namespace(view: ClusterView, namespace: str | None = None) -> list[GuardException]:
    """Every readable exception the view holds (in one namespace), by namespace and name."""
    found = [
        e
        for obj in view.list(GUARD_EXCEPTION, namespace)
        if (e := parse(obj, namespace or "")) is not None
    ]
    return sorted(found, key=lambda e: (e.namespace, e.name))


def covering(
    view: ClusterView,
    request: AdmissionRequest,
    policy: str,
    *,
    now: dt.datetime,
    longest: dt.timedelta,
) -> GuardException | None:
    """The exception in force that lets this request's user act past `policy` on its object
    (the first by name, when several do), or None."""
    if not request.namespace:
        return None  # exceptions are namespaced; so is every object a policy guards
    candidates = in_namespace(view, request.namespace)
    if not candidates:
        return None
    target = target_of(request, view)
    if target is None:
        return None
    user = request.user_info
    for exception in candidates:
        if exception.in_force(now, longest) and exception.covers(
            policy, target, user.username, user.groups
        ):
            return exception
    return None
