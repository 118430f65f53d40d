"""The leader's background work on managed headless Services and quorum
PodDisruptionBudgets: the only writes we make.

Admission has no side effects. The headless-service mutation only marks a set that names a
missing Service (`stateful-guard.io/managed-service: "true"`); every `--reconcile-interval`
seconds the Lease leader reads the sets the API server stored (through the watch) and, for
each marked set whose Service still does not exist:
- creates it from the stored set (`service_for`: its name, selector and named ports), in the
  set's namespace, owned by the set (the garbage collector removes it with the set);
- only once the set is `delay` seconds old (a manifest that applies its Service just after
  its set gets its own, not ours), and only in a namespace the mutating webhook's own
  `namespaceSelector` selects and where headless-service is enforced (`guarded`): never in
  kube-system, our own namespace, an opted-out or an unlabelled opt-in namespace.
A set that was refused, or only dry-run, was never stored, so it never gets a Service.

Managed Services without an owner (made by releases that created them at admission) are
adopted by their set once it exists, and deleted if it never appeared within `grace` seconds.

Where `disruptionBudgets` is on (config; off by default) and quorum is enforced, a quorum
set gets a PodDisruptionBudget (`policies.quorum_profile.budget_for`), owned by the set, kept in
step with its replicas, and deleted when the set no longer needs one. Never over a user's:
a set whose pods another PodDisruptionBudget selects gets none, and ours is deleted when
one appears (the eviction API refuses every eviction of a pod two budgets select).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from policies.headless_service import DNS_1035, MANAGED_SERVICE, service_for
from policies.objects import (
    SET_ANNOTATION,
    annotations_of,
    is_managed,
    metadata,
    pod_template_labels,
    selects,
    spec,
)
from policies.quorum_profile import budget_for
from policies.view import DISRUPTION_BUDGET, SERVICE, STATEFUL_SET, ClusterView

log = logging.getLogger("stateful_guard.reconcile")

NAME_LABEL = "kubernetes.io/metadata.name"  # every namespace carries its own name
NEVER = frozenset({"kube-system"})


class Writer(Protocol):
    def create(self, obj: Mapping[str, Any], owner: Mapping[str, Any]) -> str: ...

    def adopt(self, service: Mapping[str, Any], stateful_set: Mapping[str, Any]) -> None: ...

    def replace_budget_spec(
        self, budget: Mapping[str, Any], new_spec: Mapping[str, Any]
    ) -> None: ...

    def delete(self, kind: str, obj: Mapping[str, Any]) -> None: ...


def _age(obj: Mapping[str, Any], now: dt.datetime) -> float:
    created = str(metadata(obj).get("creationTimestamp") or "")
    try:
        when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (now - when).total_seconds()


def guarded_namespaces(
    view: ClusterView,
    selector: Mapping[str, Any] | None,
    *,
    enforced: Callable[[str], bool],
    own_namespace: str,
) -> Callable[[str], bool]:
    """Where the leader may create objects: namespaces the mutating webhook's
    `namespaceSelector` selects (None: the configuration could not be read, so nowhere) and
    where `enforced` says (the policy the object serves is enforced there)."""

    def guarded(namespace: str) -> bool:
        if selector is None or namespace in NEVER or namespace == own_namespace:
            return False
        namespace_labels = {**view.namespace_labels(namespace), NAME_LABEL: namespace}
        return selects(selector, namespace_labels) and enforced(namespace)

    return guarded


def _create_missing(
    view: ClusterView,
    writer: Writer,
    *,
    delay: float,
    guarded: Callable[[str], bool],
    now: dt.datetime,
) -> list[str]:
    done = []
    for stateful_set in view.list(STATEFUL_SET):
        if annotations_of(stateful_set).get(MANAGED_SERVICE) != "true":
            continue
        meta = metadata(stateful_set)
        namespace, set_name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        service_name = spec(stateful_set).get("serviceName")
        if not (isinstance(service_name, str) and DNS_1035.fullmatch(service_name)):
            continue
        if view.get(SERVICE, namespace, service_name) is not None:
            continue
        if _age(stateful_set, now) < delay or not meta.get("uid") or not guarded(namespace):
            continue
        result = writer.create(service_for(stateful_set, service_name, namespace), stateful_set)
        done.append(f"{result} Service {namespace}/{service_name} for StatefulSet {set_name}")
    return done


def _tend_unowned(
    view: ClusterView, writer: Writer, *, grace: float, now: dt.datetime
) -> list[str]:
    done = []
    for service in view.list(SERVICE):
        if not is_managed(service):
            continue
        meta = metadata(service)
        if meta.get("ownerReferences"):
            continue
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        set_name = str(annotations_of(service).get(SET_ANNOTATION, name))
        stateful_set = view.get(STATEFUL_SET, namespace, set_name)
        if stateful_set is not None:
            if metadata(stateful_set).get("uid"):
                writer.adopt(service, stateful_set)
                done.append(f"adopted Service {namespace}/{name} by StatefulSet {set_name}")
        elif _age(service, now) > grace:
            writer.delete(SERVICE, service)
            done.append(
                f"deleted Service {namespace}/{name}: StatefulSet {set_name} never appeared"
            )
    return done


def _budget_wanted(
    view: ClusterView, stateful_set: Mapping[str, Any], *, wanted: bool
) -> tuple[dict[str, Any] | None, str]:
    """The budget a set should have (None: none of ours), and why not when it should not."""
    if not wanted:
        return None, "disruptionBudgets is off, or quorum not enforced, in its namespace"
    desired = budget_for(stateful_set)
    if desired is None:
        return None, "the set has no quorum member to spare"
    namespace = str(metadata(stateful_set).get("namespace") or "")
    pod_labels = pod_template_labels(stateful_set)
    for other in view.list(DISRUPTION_BUDGET, namespace):
        if not is_managed(other) and selects(spec(other).get("selector"), pod_labels):
            return None, f"PodDisruptionBudget {metadata(other).get('name')} selects its pods"
    return desired, ""


def _tend_budgets(
    view: ClusterView,
    writer: Writer,
    *,
    delay: float,
    wanted: Callable[[str], bool],
    now: dt.datetime,
) -> list[str]:
    if not view.has(DISRUPTION_BUDGET):
        return []
    ours = {
        (str(metadata(b).get("namespace")), annotations_of(b).get(SET_ANNOTATION)): b
        for b in view.list(DISRUPTION_BUDGET)
        if is_managed(b)
    }
    done = []
    for stateful_set in view.list(STATEFUL_SET):
        meta = metadata(stateful_set)
        namespace, set_name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        mine = ours.get((namespace, set_name))
        desired, why_not = _budget_wanted(
            view, stateful_set, wanted=bool(meta.get("uid")) and wanted(namespace)
        )
        if mine is not None:
            name = f"{namespace}/{metadata(mine).get('name')}"
            if desired is None:
                writer.delete(DISRUPTION_BUDGET, mine)
                done.append(
                    f"deleted PodDisruptionBudget {name} of StatefulSet {set_name}: {why_not}"
                )
            elif any(spec(mine).get(k) != v for k, v in desired["spec"].items()):
                writer.replace_budget_spec(mine, desired["spec"])
                done.append(
                    f"updated PodDisruptionBudget {name} of StatefulSet {set_name}: "
                    f"maxUnavailable {desired['spec']['maxUnavailable']}"
                )
        elif desired is not None and _age(stateful_set, now) >= delay:
            result = writer.create(desired, stateful_set)
            done.append(
                f"{result} PodDisruptionBudget {namespace}/{desired['metadata']['name']} for "
                f"StatefulSet {set_name}: maxUnavailable {desired['spec']['maxUnavailable']}"
            )
    return done


def reconcile_once(
    view: ClusterView,
    writer: Writer,
    *,
    grace: float,
    delay: float,
    guarded: Callable[[str], bool],
    budgets: Callable[[str], bool] | None = None,
    now: dt.datetime | None = None,
) -> list[str]:
    """One pass; returns what it did, each line starting with the action. Blocking.
    `guarded`: where Services are made; `budgets`: where quorum sets get budgets (None: not
    known this pass, so budgets are left as they are)."""
    now = now or dt.datetime.now(dt.UTC)
    done = _create_missing(view, writer, delay=delay, guarded=guarded, now=now)
    done += _tend_unowned(view, writer, grace=grace, now=now)
    if budgets is not None:
        done += _tend_budgets(view, writer, delay=delay, wanted=budgets, now=now)
    return done
