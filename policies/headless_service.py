"""headless-service: a StatefulSet names a headless Service that selects its pods.

Rule: on StatefulSet CREATE an empty `spec.serviceName` is set to the set's name. A named
Service that exists but is not headless (`clusterIP: None`), or whose selector does not
select the set's pods, is refused.

Why: the stable network identity a StatefulSet promises (`mysql-0.mysql.db.svc`) exists only
through a headless Service that selects its pods. With a normal Service, or one selecting
other pods, peers cannot find each other by name: replication and quorum membership break.

`serviceName` is immutable, so UPDATEs are never refused for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.base import Match, Policy, Result, Review
from policies.objects import metadata, name_of, pod_template_labels, ref, spec
from policies.view import SERVICE

CREATE = frozenset({"CREATE"})


def mutate(review: Review) -> Result:
    set_spec = spec(review.object)
    if review.object is None or set_spec.get("serviceName"):
        return Result.allow()
    name = name_of(review.object)
    if not name:
        prefix = metadata(review.object).get("generateName", "")
        owner = ref("StatefulSet", review.namespace, f"{prefix}*")
        return Result.warn(
            f"{owner}: a generated name cannot name its Service; set spec.serviceName to a "
            "headless Service",
            short=f"{owner}: a generated name cannot name its Service; set spec.serviceName",
        )
    review.object.setdefault("spec", set_spec)["serviceName"] = name
    return Result.changed(f"set spec.serviceName to {name}")


def _selector_text(selector: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "nothing"


def validate(review: Review) -> Result:
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
        return Result.warn(
            f"{owner}: {service_ref} does not exist; create it headless (clusterIP: None) "
            "selecting the set's pods",
            short=f"{owner}: {service_ref} does not exist; create it headless",
        )
    service_spec = service.get("spec") or {}
    cluster_ip = service_spec.get("clusterIP")
    if cluster_ip != "None":
        shown = cluster_ip or service_spec.get("type", "unset")
        return Result.deny(
            f"{owner} names {service_ref}, which is not headless (clusterIP {shown}); pods "
            "get stable DNS names only through a headless Service. Recreate the Service "
            "with clusterIP: None, or set spec.serviceName to a headless one.",
            short=f"{owner}: {service_ref} is not headless; recreate it with clusterIP: None",
        )
    selector = service_spec.get("selector") or {}
    pod_labels = pod_template_labels(review.object)
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        return Result.deny(
            f"{owner} names {service_ref}, whose selector {_selector_text(selector)} does not "
            f"select the set's pods (labels {_selector_text(pod_labels)}); their DNS names "
            "would not resolve. Make the Service's selector match the pod template labels.",
            short=f"{owner}: {service_ref} does not select the set's pods; fix its selector",
        )
    return Result.allow()


POLICY = Policy(
    id="headless-service",
    rationale="StatefulSet pods get stable DNS names only through a headless Service.",
    matches=(Match(group="apps", resource="statefulsets", operations=CREATE),),
    mutate=mutate,
    validate=validate,
)
