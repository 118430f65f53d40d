"""GuardExceptions through the real API server: the CRD refuses malformed ones, only holders of
stateful-guard-exception-writer may write one, `edit` alone can neither write one nor get
past a data guard by annotating, and an exception lets its user act from the seconds after
it is written until the second it expires, on record as an Event and in the PolicyReport."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client import ApiException

from policies import exceptions
from tests.e2e.cluster import Cluster, Install, message, wait_for
from tests.e2e.test_namespaced import scheduled_set_pod, warnings
from tests.support import ROOT

GROUP, VERSION, PLURAL = exceptions.GROUP, exceptions.VERSION, exceptions.PLURAL


def as_user(cluster: Cluster, user: str) -> k8s.ApiClient:
    client = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    client.set_default_header("Impersonate-User", user)
    return client


def bind(cluster: Cluster, namespace: str, role: str, user: str) -> None:
    k8s.RbacAuthorizationV1Api(cluster.api).create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": f"{role}-{user}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )


def guard_exception(namespace: str, name: str, expires: dt.datetime, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": exceptions.API_VERSION,
        "kind": "GuardException",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "policies": ["force-delete"],
            "match": {"kinds": ["Pod"], "names": ["web-0", "db-0"]},
            "subjects": {"users": ["dana"]},
            "reason": "node e2e-node-1 lost its disk controller, INC-4411",
            "expiresAt": exceptions.stamp(expires),
            **spec,
        },
    }


def refused(call: Any) -> ApiException:
    with pytest.raises(ApiException) as caught:
        call()
    return caught.value


def test_the_crd_refuses_malformed_exceptions(cluster: Cluster, namespaced: Install) -> None:
    ns = cluster.namespace(mode="enforce")
    custom = k8s.CustomObjectsApi(cluster.api)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    cases = {
        "no object named": ({"match": {"kinds": ["Pod"]}}, "name the objects"),
        "empty selector": ({"match": {"selector": {}}}, "an empty selector matches every"),
        "blank reason": ({"reason": "  "}, "a reason is required"),
        "unknown policy": ({"policies": ["nonsense"]}, "Unsupported value"),
        "starts after it ends": (
            {"notBefore": exceptions.stamp(soon + dt.timedelta(hours=1))},
            "notBefore must come before expiresAt",
        ),
    }
    for what, (spec, said) in cases.items():
        body = guard_exception(ns, "bad", soon, **spec)
        answer = refused(
            lambda b=body: custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, b)
        )
        assert answer.status == 422, what
        assert said in message(answer), (what, message(answer))
    # CEL has no clock: the webhook refuses an expiry past exceptions.maxDuration (7d)
    month = guard_exception(ns, "month", soon + dt.timedelta(days=30))
    answer = refused(
        lambda: custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, month)
    )
    assert answer.status == 403
    assert "[guard-exception] GuardException" in message(answer)
    assert "the longest an exception may last here" in message(answer)


def test_an_exception_lets_its_user_force_delete_until_the_second_it_expires(
    cluster: Cluster, namespaced: Install, policy_report_crd: str
) -> None:
    ns = cluster.namespace(mode="enforce")
    web, db = scheduled_set_pod(cluster, ns, "web"), scheduled_set_pod(cluster, ns, "db")
    bind(cluster, ns, "edit", "dana")  # may delete and patch pods, as developers may
    bind(cluster, ns, "stateful-guard-exception-writer", "erin")  # an on-call lead
    dana, erin = as_user(cluster, "dana"), as_user(cluster, "erin")
    dana_core = k8s.CoreV1Api(dana)
    wait_for(lambda: dana_core.read_namespaced_pod(web, ns), what="dana's edit binding")
    wait_for(
        lambda: k8s.CustomObjectsApi(erin).list_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL
        ),
        what="erin's exception-writer binding",
    )

    # `edit` alone: no exception, no way past the guard by annotating
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=40)
    body = guard_exception(ns, "fd-web", expires)
    denied = refused(
        lambda: k8s.CustomObjectsApi(dana).create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, body
        )
    )
    assert denied.status == 403 and "guardexceptions" in message(denied)
    armed = {"metadata": {"annotations": {"stateful-guard.io/allow-force-delete": "node lost"}}}
    assert refused(lambda: dana_core.patch_namespaced_pod(web, ns, armed)).status == 403
    cluster.core.patch_namespaced_pod(web, ns, armed)  # even set by an admin, it does nothing
    before = refused(lambda: dana_core.delete_namespaced_pod(web, ns, grace_period_seconds=0))
    assert before.status == 403
    assert (
        f"have an exception writer run `stateful-guard exception create --policy force-delete "
        f"--pod {ns}/{web} --for 1h --reason <why>`"
    ) in message(before)

    # erin writes one for dana; it applies within seconds (watched)
    k8s.CustomObjectsApi(erin).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    written = time.monotonic()
    wait_for(
        lambda: dana_core.delete_namespaced_pod(web, ns, grace_period_seconds=0, dry_run="All"),
        timeout=15,
        what="the exception to apply",
    )
    assert time.monotonic() - written < 10
    uid = cluster.core.read_namespaced_pod(web, ns).metadata.uid
    _, _, headers = dana_core.delete_namespaced_pod_with_http_info(web, ns, grace_period_seconds=0)
    assert f"[force-delete] Pod {web}: allowed by GuardException fd-web until" in warnings(headers)
    # not for another user, though the pod is named
    other = refused(lambda: cluster.core.delete_namespaced_pod(db, ns, grace_period_seconds=0))
    assert other.status == 403

    # on record: an Event on the pod naming the exception, and the namespace's PolicyReport
    def excepted() -> list[Any]:
        found = cluster.core.list_namespaced_event(
            ns, field_selector=f"involvedObject.uid={uid},reason=Excepted"
        ).items
        return found

    [event] = wait_for(excepted, timeout=15, what="the Excepted event")
    assert event.metadata.annotations["stateful-guard.io/exception"] == f"{ns}/fd-web"
    assert event.metadata.annotations["stateful-guard.io/user"] == "dana"

    def reported() -> list[dict[str, Any]]:
        try:
            report = k8s.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
                "wgpolicyk8s.io", "v1alpha2", ns, "policyreports", "stateful-guard"
            )
        except ApiException:
            return []
        return [r for r in report.get("results") or [] if r["category"] == "exception used"]

    [result] = wait_for(reported, timeout=60, what="the exception's use in the PolicyReport")
    assert result["result"] == "skip" and result["properties"]["exception"] == f"{ns}/fd-web"

    # one second after expiresAt the same delete by the same user is refused
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds() + 1))
    after = refused(lambda: dana_core.delete_namespaced_pod(db, ns, grace_period_seconds=0))
    assert after.status == 403 and "[force-delete]" in message(after)


def test_exception_create_apply_writes_an_object_the_api_server_accepts(
    cluster: Cluster, namespaced: Install
) -> None:
    ns = cluster.namespace(mode="enforce")
    run = subprocess.run(
        [
            sys.executable, "-m", "webhook.cli", "exception", "create",
            "--policy", "pvc-protection", "--claim", f"{ns}/data-kafka-2", "--for", "30m",
            "--reason", "decommissioning broker 2, CHG-88", "--approved-by", "lead@example.com",
            "--apply", "--kubeconfig", str(cluster.kubeconfig),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    [stored] = k8s.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL
    )["items"]
    assert f"guardexception.stateful-guard.io/{stored['metadata']['name']} created" in run.stdout
    assert stored["spec"]["match"] == {
        "kinds": ["PersistentVolumeClaim"],
        "names": ["data-kafka-2"],
    }
    assert stored["spec"]["approvedBy"] == "lead@example.com"
