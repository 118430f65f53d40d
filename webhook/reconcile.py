"""The leader's background work on managed headless Services.

The headless-service policy creates a Service when a StatefulSet is created without one, but
the set does not exist yet then (admission runs before it is stored), so the Service cannot
own-reference it. Every `--reconcile-interval` seconds the Lease leader: gives each managed
Service an ownerReference to its set once the set exists (the garbage collector then removes
the Service with the set); deletes managed Services whose set never appeared within `grace`
seconds (a create refused after our mutation, by a later webhook or by validation).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from policies.headless_service import MANAGED_BY, SET_ANNOTATION
from policies.objects import annotations_of, labels, metadata
from policies.view import SERVICE, STATEFUL_SET, ClusterView
from webhook.writer import ClusterWriter

log = logging.getLogger("stateful_guard.reconcile")


def _age(obj: Mapping[str, Any], now: dt.datetime) -> float:
    created = str(metadata(obj).get("creationTimestamp") or "")
    try:
        when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (now - when).total_seconds()


def reconcile_once(
    view: ClusterView, writer: ClusterWriter, *, grace: float, now: dt.datetime | None = None
) -> list[str]:
    """One pass; returns what it did. Blocking (API writes)."""
    now = now or dt.datetime.now(dt.UTC)
    done = []
    for service in view.list(SERVICE):
        if any(labels(service).get(k) != v for k, v in MANAGED_BY.items()):
            continue
        meta = metadata(service)
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        set_name = str(annotations_of(service).get(SET_ANNOTATION, name))
        stateful_set = view.get(STATEFUL_SET, namespace, set_name)
        if stateful_set is not None:
            uid = metadata(stateful_set).get("uid")
            owners = meta.get("ownerReferences") or []
            if uid and not any(o.get("uid") == uid for o in owners):
                writer.adopt(service, stateful_set)
                done.append(f"adopted Service {namespace}/{name} by StatefulSet {set_name}")
        elif _age(service, now) > grace:
            writer.delete(service)
            done.append(
                f"deleted Service {namespace}/{name}: StatefulSet {set_name} never appeared"
            )
    return done
