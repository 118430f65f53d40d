"""The routes around the force-delete guard (issue 15), through the real API server: each was
allowed before; each is refused now, by the webhooks as deploy/ ships them."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client import ApiException

from tests.e2e.cluster import Cluster, Install, message, wait_for
from tests.e2e.test_namespaced import scheduled_set_pod


def evict(
    cluster: Cluster, namespace: str, pod: str, grace: int | None, *, dry_run: bool = False
) -> None:
    body: dict[str, object] = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": namespace},
    }
    if grace is not None:
        body["deleteOptions"] = {"gracePeriodSeconds": grace}
    if dry_run:
        cluster.core.create_namespaced_pod_eviction(pod, namespace, body, dry_run="All")
    else:
        cluster.core.create_namespaced_pod_eviction(pod, namespace, body)


def gone_or_terminating(cluster: Cluster, namespace: str, pod: str) -> bool:
    try:
        stored = cluster.core.read_namespaced_pod(pod, namespace)
    except ApiException as exc:
        return exc.status == 404
    return stored.metadata.deletion_timestamp is not None


def test_eviction_with_grace_zero_refused_an_ordinary_one_allowed(
    cluster: Cluster, namespaced: Install
) -> None:
    """`kubectl drain --grace-period=0`: an Eviction that deletes at once, with no pods-DELETE
    admission and no labels for an objectSelector. The evictions webhook sees it; a drain
    without --grace-period=0 passes (the set is no quorum cluster)."""
    ns = cluster.namespace(mode="enforce")
    pod = scheduled_set_pod(cluster, ns)

    def refusal() -> str:
        """A dry-run eviction until the webhook's view has the bound pod (a watch event
        behind the binding): refused from then on."""
        try:
            evict(cluster, ns, pod, 0, dry_run=True)
        except ApiException as exc:
            return message(exc) if exc.status == 403 else ""
        return ""

    wait_for(refusal, timeout=15, what="the dry-run eviction to be refused")
    with pytest.raises(ApiException) as refused:
        evict(cluster, ns, pod, 0)
    assert refused.value.status == 403, message(refused.value)
    assert (
        'admission webhook "evictions.stateful-guard.io" denied the request: [force-delete] '
        f"pod {ns}/{pod} belongs to StatefulSet web; an eviction with grace period 0"
    ) in message(refused.value)
    assert cluster.core.read_namespaced_pod(pod, ns).metadata.deletion_timestamp is None

    evict(cluster, ns, pod, None)  # an ordinary drain: the pod's own grace period
    assert wait_for(lambda: gone_or_terminating(cluster, ns, pod), what="the eviction")


def test_removing_the_pod_name_label_refused(cluster: Cluster, namespaced: Install) -> None:
    """The pods webhook selects set pods by their pod-name label; taking it off first would
    hide the force delete that follows."""
    ns = cluster.namespace(mode="enforce")
    pod = scheduled_set_pod(cluster, ns)
    strip = [{"op": "remove", "path": "/metadata/labels/statefulset.kubernetes.io~1pod-name"}]
    with pytest.raises(ApiException) as refused:
        cluster.core.patch_namespaced_pod(pod, ns, strip)
    assert refused.value.status == 403
    assert "Keep the label" in message(refused.value)
    # other labels change freely (the matchCondition does not even send those updates)
    cluster.core.patch_namespaced_pod(pod, ns, {"metadata": {"labels": {"role": "drained"}}})


def test_an_orphaned_set_pod_stays_guarded(cluster: Cluster, namespaced: Install) -> None:
    """`kubectl delete sts --cascade=orphan`: the pod runs on with no ownerReference, its
    claim named by no set. Neither the pod's force delete nor the claim's delete passes."""
    ns = cluster.namespace(mode="enforce")
    pod = scheduled_set_pod(cluster, ns)
    cluster.apps.delete_namespaced_stateful_set("web", ns, propagation_policy="Orphan")
    wait_for(
        lambda: not cluster.core.read_namespaced_pod(pod, ns).metadata.owner_references,
        what="the garbage collector to orphan the pod",
    )
    with pytest.raises(ApiException) as refused:
        cluster.core.delete_namespaced_pod(pod, ns, grace_period_seconds=0)
    assert refused.value.status == 403
    assert f"pod {ns}/{pod} belongs to StatefulSet web" in message(refused.value)
    claim = f"data-{pod}"
    wait_for(lambda: cluster.core.read_namespaced_persistent_volume_claim(claim, ns), what=claim)

    def delete_claim() -> str:
        """A dry-run delete, until the webhook's view no longer has the set (a watch event
        behind the delete; until then it is refused as the set's claim)."""
        try:
            cluster.core.delete_namespaced_persistent_volume_claim(claim, ns, dry_run="All")
        except ApiException as exc:
            return message(exc) if "is mounted by" in message(exc) else ""
        return "allowed"

    assert f"is mounted by pod {pod} of StatefulSet web" in wait_for(
        delete_claim, timeout=15, what="the claim delete to be refused"
    )


def as_user(cluster: Cluster, user: str) -> k8s.CoreV1Api:
    client = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    client.set_default_header("Impersonate-User", user)
    return k8s.CoreV1Api(client)


def test_break_glass_annotations_need_their_own_permission(
    cluster: Cluster, namespaced: Install
) -> None:
    """A user who may patch and delete pods (as the built-in `edit` role may) cannot arm a
    pod for force deletion; bound to stateful-guard-break-glass in the namespace, they can."""
    ns = cluster.namespace(mode="enforce")
    pod = scheduled_set_pod(cluster, ns)
    rbac = k8s.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "pod-editor"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch", "delete"]}
            ],
        },
    )

    def bind(role: str, kind: str = "ClusterRole") -> None:
        rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "dana"}
                ],
            },
        )

    bind("pod-editor", kind="Role")
    dana = as_user(cluster, "dana")
    arm = {"metadata": {"annotations": {"stateful-guard.io/allow-force-delete": "node lost"}}}

    def attempt() -> str:
        """Dana's patch, once her pod-editor binding is in force (RBAC caches catch up)."""
        try:
            dana.patch_namespaced_pod(pod, ns, arm)
        except ApiException as exc:
            return f"{exc.status} {message(exc)}" if "breakglass" in message(exc) else ""
        return "allowed"

    refused = wait_for(attempt, timeout=15, what="the pod-editor binding")
    assert refused.startswith("403 ")
    assert "needs the verb use on breakglass.stateful-guard.io" in refused

    bind("stateful-guard-break-glass")
    wait_for(lambda: dana.patch_namespaced_pod(pod, ns, arm), what="the binding to apply")
    # Armed, but break-glass annotations count only where breakGlass.annotations is on (not
    # in the shipped configuration): the force delete is still refused.
    with pytest.raises(ApiException) as still:
        dana.delete_namespaced_pod(pod, ns, grace_period_seconds=0)
    assert still.value.status == 403 and "stateful-guard exception create" in message(still.value)
