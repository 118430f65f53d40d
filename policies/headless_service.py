"""headless-service: a StatefulSet names a headless Service that selects its pods.

Rule: on StatefulSet CREATE an empty `spec.serviceName` is set to the set's name. When the
named Service does not exist, the set is marked `stateful-guard.io/managed-service: "true"`,
and once the API server has stored it, the Lease leader creates the Service from the stored
set (`webhook/cluster/reconcile.py`): headless, selecting the set's `matchLabels`, with the pod
template's named container ports, `publishNotReadyAddresses: true` (peers must find each
other before they are ready), labelled `app.kubernetes.io/managed-by: stateful-guard` and
owned by the set (the garbage collector removes it with the set). Admission itself has no
side effects: a set that is refused, or only dry-run, never gets a Service, and a forged
review can create nothing. A named Service that exists but is not headless
(`clusterIP: None`), or whose selector does not select the set's pods, gets a warning with
the fix: add a separate headless Service and point `serviceName` at it. A name that cannot
name a Service (a DNS-1035 label: `1db` starts with a digit) gets a warning, not a Service.

Why: the stable network identity a StatefulSet promises (`mysql-0.mysql.db.svc`) exists only
through a headless Service that selects its pods. With a normal Service, peers cannot find
each other by name. Nothing else breaks: a single-replica database or a stateless proxy set
governed by a plain ClusterIP Service runs fine, so that is a warning, never a refusal (and
turning the chart's Service headless would break its port mapping and its clients).

`serviceName` is immutable: on UPDATE, a request that omits it gets the stored value back,
so re-sending the original manifest converges instead of being refused by the API server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from policies.base import Match, Policy, Result, Review
from policies.objects import (
    MANAGED_BY,
    SET_ANNOTATION,
    metadata,
    name_of,
    pod_template_labels,
    ref,
    shown,
    spec,
)
from policies.view import SERVICE

WRITES = frozenset({"CREATE", "UPDATE"})


MANAGED_SERVICE = "stateful-guard.io/managed-service"  # on a set: make its Service
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def service_for(stateful_set: Mapping[str, Any], name: str, namespace: str) -> dict[str, Any]:
    """The headless Service a set needs: its pods' labels, its named ports."""
    set_spec = spec(stateful_set)
    selector = set_spec.get("selector") or {}
    match_labels = selector.get("matchLabels") if isinstance(selector, dict) else None
    ports = []
    template = set_spec.get("template") or {}
    for container in spec(template).get("containers") or []:
        for port in container.get("ports") or [] if isinstance(container, dict) else []:
            if isinstance(port, dict) and port.get("name") and port.get("containerPort"):
                ports.append(
                    {
                        "name": port["name"],
                        "port": port["containerPort"],
                        "targetPort": port["name"],
                        "protocol": port.get("protocol", "TCP"),
                    }
                )
    service_spec: dict[str, Any] = {
        "clusterIP": "None",
        "selector": dict(match_labels or {}),
        "publishNotReadyAddresses": True,
    }
    if ports:
        service_spec["ports"] = ports
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(MANAGED_BY),
            "annotations": {SET_ANNOTATION: name_of(stateful_set)},
        },
        "spec": service_spec,
    }


def _missing_service(review: Review, service_name: str) -> Result:
    """Mark the set for a managed Service when the view knows the named one is missing
    (without a view there is no cluster, and no leader to make it)."""
    namespace = review.namespace
    if not review.view.has(SERVICE) or review.view.get(SERVICE, namespace, service_name):
        return Result.allow()
    assert review.object is not None
    owner = ref("StatefulSet", namespace, review.request.object_name)
    if not DNS_1035.fullmatch(service_name):
        return Result.warn(
            f"{owner}: spec.serviceName {shown(service_name, 63)} cannot name a Service (a "
            "DNS-1035 label: lowercase letters, digits and '-', starting with a letter), so no "
            "headless Service can be made for it; set spec.serviceName to such a name.",
            short=f"{owner}: {shown(service_name, 20)} cannot name a Service; set spec.serviceName",
        )
    selector = spec(review.object).get("selector") or {}
    if not (isinstance(selector, dict) and selector.get("matchLabels")):
        return Result.warn(
            f"{owner}: Service {namespace}/{service_name} does not exist and the set's selector "
            "has no matchLabels to give one; create a headless Service selecting its pods.",
            short=f"{owner}: Service {service_name} missing; create it headless",
        )
    review.edits.set(("metadata", "annotations", MANAGED_SERVICE), "true")
    return Result.changed(f"create headless Service {namespace}/{service_name} once stored")


def _keep_stored(review: Review) -> Result:
    """UPDATE: an omitted serviceName gets the stored one back (it is immutable)."""
    stored = spec(review.request.old_object).get("serviceName")
    if not stored or spec(review.object).get("serviceName"):
        return Result.allow()
    review.edits.set(("spec", "serviceName"), stored)
    return Result.changed(f"keep the stored spec.serviceName {stored}")


def mutate(review: Review) -> Result:
    set_spec = spec(review.object)
    if review.object is None:
        return Result.allow()
    if review.request.operation == "UPDATE":
        return _keep_stored(review)
    if set_spec.get("serviceName"):
        return _missing_service(review, str(set_spec["serviceName"]))
    name = name_of(review.object)
    if not name:
        prefix = metadata(review.object).get("generateName", "")
        owner = ref("StatefulSet", review.namespace, f"{prefix}*")
        return Result.warn(
            f"{owner}: a generated name cannot name its Service; set spec.serviceName to a "
            "headless Service",
            short=f"{owner}: a generated name cannot name its Service; set spec.serviceName",
        )
    if not DNS_1035.fullmatch(name):
        return _missing_service(review, name)  # says why it cannot name one
    review.edits.set(("spec", "serviceName"), name)
    return Result.changed(f"set spec.serviceName to {name}") + _missing_service(review, name)


def _selector_text(selector: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "nothing"


def validate(review: Review) -> Result:
    if review.request.operation != "CREATE":
        return Result.allow()  # serviceName is immutable: judged once, at creation
    service_name = spec(review.object).get("serviceName")
    if not isinstance(service_name, str) or not service_name:
        return Result.allow()
    namespace = review.namespace
    owner = ref("StatefulSet", namespace, review.request.object_name)
    service_ref = ref("Service", namespace, service_name)
    if not review.view.has(SERVICE):
        return Result.cannot_decide(
            f"{owner}: cannot check {service_ref}, the cluster view has no Services"
        )
    service = review.view.get(SERVICE, namespace, service_name)
    if service is None:
        return Result.allow()  # the mutation creates it
    service_spec = service.get("spec") or {}
    cluster_ip = service_spec.get("clusterIP")
    fix = (
        f"add a headless Service (clusterIP: None, publishNotReadyAddresses: true) selecting "
        f"the set's pods and point spec.serviceName at it; keep {service_name} for clients"
    )
    if cluster_ip != "None":
        shown = f"clusterIP {cluster_ip}" if cluster_ip else "a cluster IP assigned"
        kind = service_spec.get("type") or "ClusterIP"
        return Result.warn(
            f"{owner} names {service_ref}, a {kind} Service ({shown}), not a headless one: "
            f"its pods get no stable DNS names (<pod>.{service_name}), which peers that "
            f"find each other by name need. To give them names, {fix}.",
            short=f"{owner}: {service_ref} is not headless; pods get no DNS names (add one)",
        )
    selector = service_spec.get("selector") or {}
    pod_labels = pod_template_labels(review.object)
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        return Result.warn(
            f"{owner} names {service_ref}, whose selector {_selector_text(selector)} does not "
            f"select the set's pods (labels {_selector_text(pod_labels)}); their DNS names "
            "would not resolve. Make the Service's selector match the pod template labels.",
            short=f"{owner}: {service_ref} does not select the set's pods; fix its selector",
        )
    return Result.allow()


POLICY = Policy(
    id="headless-service",
    rationale="StatefulSet pods get stable DNS names only through a headless Service.",
    matches=(Match(group="apps", resource="statefulsets", operations=WRITES),),
    mutate=mutate,
    validate=validate,
)
