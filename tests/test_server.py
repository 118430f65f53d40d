"""The HTTP surface: AdmissionReview in and out, 4xx JSON for calls we cannot read."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
import pytest
from aiohttp.test_utils import TestClient

from tests.support import example, request_dict, review_body, statefulset_pod
from webhook.serving.admission import parse_review
from webhook.serving.server import MAX_BODY

JSON = {"Content-Type": "application/json"}


async def post(client: TestClient, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post(path, data=data, headers=JSON)
    assert response.content_type == "application/json"
    return response.status, await response.json()


async def test_force_delete_denied_with_uid_echoed(client: TestClient) -> None:
    request = request_dict(
        "DELETE", old=statefulset_pod(), namespace="db", options={"gracePeriodSeconds": 0}
    )
    status, body = await post(client, "/validate", review_body(request))
    assert status == 200
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == request["uid"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["message"].startswith(
        "[force-delete] pod db/mysql-1 belongs to StatefulSet mysql"
    )
    assert "patch" not in response


async def test_deployment_pod_force_delete_allowed(client: TestClient) -> None:
    pod = statefulset_pod()
    pod["metadata"].update(name="frontend-7d9c-x2x8q", labels={"app": "frontend"})
    pod["metadata"]["ownerReferences"][0].update(kind="ReplicaSet", name="frontend-7d9c")
    request = request_dict("DELETE", old=pod, namespace="db", options={"gracePeriodSeconds": 0})
    status, body = await post(client, "/validate", review_body(request))
    assert status == 200
    assert body["response"] == {"uid": request["uid"], "allowed": True}


async def test_mutate_returns_a_patch_a_standard_library_applies(client: TestClient) -> None:
    statefulset = example("random-generator.yaml", "StatefulSet")
    del statefulset["spec"]["serviceName"]
    statefulset["spec"]["volumeClaimTemplates"].append(
        {"metadata": {"name": "nfs"}, "spec": {"storageClassName": "", "accessModes": ["RWX"]}}
    )
    request = request_dict("CREATE", statefulset)
    status, body = await post(client, "/mutate", review_body(request))
    assert status == 200
    response = body["response"]
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    patched = jsonpatch.apply_patch(statefulset, ops)
    assert patched["spec"]["serviceName"] == "rg"
    # The cluster has a default class, which the claims get when they are made: the
    # template is left as the manifest says, so the next upgrade re-sends the same thing.
    assert "storageClassName" not in patched["spec"]["volumeClaimTemplates"][0]["spec"]
    assert patched["spec"]["volumeClaimTemplates"][1]["spec"]["storageClassName"] == ""
    again = request_dict("CREATE", patched)
    _, body = await post(client, "/mutate", review_body(again))
    assert "patch" not in body["response"], "a second pass changes nothing"


async def test_validate_never_returns_a_patch(client: TestClient) -> None:
    request = request_dict("CREATE", example("mysql-replicated.yaml", "StatefulSet"))
    _, body = await post(client, "/validate", review_body(request))
    assert body["response"]["allowed"] is True
    assert "patch" not in body["response"]
    assert body["response"]["warnings"] == [
        "[stateful-practices] would deny: StatefulSet default/mysql: add a readinessProbe "
        "(OrderedReady waits on it)",
        "[availability] would deny: StatefulSet default/mysql: no PodDisruptionBudget; add one "
        "with maxUnavailable: 1",
        "[availability] would deny: StatefulSet default/mysql: members may share a node; add "
        "anti-affinity or topology spread",
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"not json", "body is not valid JSON", id="not-json"),
        pytest.param(b"", "empty body", id="empty"),
        pytest.param(b"[1, 2]", "body must be a JSON object", id="array"),
        pytest.param(
            {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}},
            "apiVersion must be admission.k8s.io/v1, got 'admission.k8s.io/v1beta1'",
            id="v1beta1",
        ),
        pytest.param(
            {"apiVersion": "admission.k8s.io/v1", "kind": "Pod", "request": {}},
            "kind must be AdmissionReview, got 'Pod'",
            id="wrong-kind",
        ),
        pytest.param(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
            "request: Field required",
            id="no-request",
        ),
        pytest.param(
            review_body(
                {
                    k: v
                    for k, v in request_dict("DELETE", old=statefulset_pod()).items()
                    if k != "uid"
                }
            ),
            "request.uid: Field required",
            id="no-uid",
        ),
        pytest.param(
            review_body({**request_dict("DELETE", old=statefulset_pod()), "uid": ""}),
            "request.uid: String should have at least 1 character",
            id="empty-uid",
        ),
        pytest.param(
            review_body({**request_dict("DELETE", old=statefulset_pod()), "operation": "DESTROY"}),
            "request.operation: Input should be",
            id="bad-operation",
        ),
        pytest.param(
            review_body({**request_dict("DELETE", old=statefulset_pod()), "oldObject": [1]}),
            "request.oldObject: Input should be a valid dictionary",
            id="object-a-list",
        ),
    ],
)
async def test_unreadable_calls_get_400_naming_the_problem(
    client: TestClient,
    body: Any,
    message: str,
) -> None:
    status, answer = await post(client, "/validate", body)
    assert status == 400
    assert message in answer["error"], answer
    assert answer["status"] == 400


def test_fields_are_read_by_their_wire_names_only() -> None:
    """The API server sends camelCase; a snake_case field is an unknown one, ignored."""

    def parse(request: dict[str, Any]) -> Any:
        return parse_review(json.dumps(review_body(request)).encode()).request

    camel = request_dict("DELETE", old=statefulset_pod(), dry_run=True)
    parsed = parse(camel)
    assert (parsed.old_object, parsed.dry_run) == (statefulset_pod(), True)
    snake = {**camel, "old_object": camel["oldObject"], "dry_run": True}
    del snake["oldObject"], snake["dryRun"]
    parsed = parse(snake)
    assert (parsed.old_object, parsed.dry_run) == (None, False)


async def test_wrong_content_type_is_415(client: TestClient) -> None:
    response = await client.post("/mutate", data=b"{}", headers={"Content-Type": "text/plain"})
    assert response.status == 415
    assert (await response.json())["error"] == (
        "content type must be application/json, got text/plain"
    )


async def test_a_missing_content_type_is_said_to_be_missing(client: TestClient) -> None:
    response = await client.post("/mutate", data=b"{}", skip_auto_headers=["Content-Type"])
    assert response.status == 415
    assert (await response.json())["error"] == ("content type must be application/json, got none")


async def test_a_body_that_is_not_utf8_is_said_to_be_so(client: TestClient) -> None:
    response = await client.post("/validate", data=b'{"a": "\xff\xfe"}', headers=JSON)
    assert response.status == 400
    assert (await response.json())["error"] == "body is not UTF-8 (byte 7); JSON must be UTF-8"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/validate", 400), ("GET", "/nowhere", 404), ("GET", "/validate", 405)],
)
async def test_every_rejected_request_leaves_a_log_line(
    client: TestClient, caplog: pytest.LogCaptureFixture, method: str, path: str, status: int
) -> None:
    caplog.set_level("INFO", logger="stateful_guard.server")
    response = await client.request(method, path, data=b"not json", headers=JSON)
    assert response.status == status
    [line] = [r for r in caplog.records if r.getMessage() == "rejected request"]
    assert (line.status, line.method, line.path) == (status, method, path)  # type: ignore[attr-defined]
    assert line.error  # type: ignore[attr-defined]


async def test_huge_body_is_413(client: TestClient) -> None:
    response = await client.post("/validate", data=b" " * (MAX_BODY + 1), headers=JSON)
    assert response.status == 413
    assert "body larger than 7340032 bytes" in (await response.json())["error"]


async def test_huge_chunked_body_is_413(client: TestClient) -> None:
    async def chunks():
        for _ in range(8):
            yield b" " * (1024 * 1024)

    response = await client.post("/validate", data=chunks(), headers=JSON)
    assert response.status == 413
    assert "body larger than" in (await response.json())["error"]


async def test_body_just_under_the_limit_is_read(client: TestClient) -> None:
    pod = statefulset_pod()
    pod["metadata"]["annotations"] = {"big": "x" * (3 * 1024 * 1024)}  # two such fit in 7 MiB
    request = request_dict(
        "DELETE", old=pod, namespace="db", options={"gracePeriodSeconds": 0}, object=None
    )
    status, body = await post(client, "/validate", review_body(request))
    assert status == 200 and body["response"]["allowed"] is False


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/mutate", 405), ("GET", "/nope", 404), ("POST", "/healthz", 405)],
)
async def test_other_routes_answer_json_errors(
    client: TestClient,
    method: str,
    path: str,
    status: int,
) -> None:
    response = await client.request(method, path)
    assert response.status == status
    assert (await response.json())["status"] == status


async def test_probes_and_metrics(client: TestClient, ops: TestClient) -> None:
    for port in (client, ops):
        assert (await (await port.get("/healthz")).json()) == {"status": "ok"}
        assert (await port.get("/readyz")).status == 200
    assert (await client.get("/metrics")).status == 404  # only on the ops port
    request = request_dict(
        "DELETE", old=statefulset_pod(), namespace="db", options={"gracePeriodSeconds": 0}
    )
    await post(client, "/validate", review_body(request))
    await post(client, "/validate", b"garbage")
    text = await (await ops.get("/metrics")).text()
    assert (
        'stateful_guard_policy_decisions_total{decision="deny",mode="enforce",'
        'policy="force-delete"} 1.0'
    ) in text
    assert 'stateful_guard_admission_requests_total{code="400",endpoint="validate"} 1.0' in text
    assert 'stateful_guard_admission_duration_seconds_count{endpoint="validate"} 2.0' in text
    buckets = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('stateful_guard_admission_duration_seconds_bucket{endpoint="validate"')
    ]
    assert len(buckets) == 13 and buckets == sorted(buckets) and buckets[-1] == 2.0


async def test_readyz_waits_for_the_view(client: TestClient, ops: TestClient) -> None:
    from webhook.serving.server import STATE

    client.app[STATE].ready = lambda: False
    for port in (client, ops):
        assert (await port.get("/readyz")).status == 503


async def test_audit_mode_records_refused_deletes_and_scales(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    """In audit mode a would-be refusal (here a force delete and a scale below quorum, which no
    report CRD can show) is allowed and recorded: annotation, log line, metric."""
    from policies.config import Config
    from webhook.cluster.memory import MemoryView
    from webhook.engine import Engine
    from webhook.serving.metrics import Metrics
    from webhook.serving.server import ServerState, make_app, make_ops_app

    zk = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "zk",
            "namespace": "db",
            "annotations": {"stateful-guard.io/min-replicas": "3"},
        },
        "spec": {"replicas": 3},
    }
    config = Config.model_validate(
        {"policies": {"force-delete": {"mode": "audit"}, "quorum": {"mode": "audit"}}}
    )
    state = ServerState(engine=Engine(MemoryView([zk]), config), metrics=Metrics())
    client = await aiohttp_client(make_app(state))
    ops = await aiohttp_client(make_ops_app(state))
    delete = request_dict(
        "DELETE", old=statefulset_pod(), namespace="db", options={"gracePeriodSeconds": 0}
    )
    scale = request_dict(
        "UPDATE",
        {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": "zk", "namespace": "db"},
            "spec": {"replicas": 1},
        },
        old={
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": "zk", "namespace": "db"},
            "spec": {"replicas": 3},
        },
        namespace="db",
        sub_resource="scale",
    )
    for request, key, text in (
        (delete, "force-delete", "would deny: pod db/mysql-1"),
        (scale, "quorum", "would deny: StatefulSet db/zk: 3->1"),
    ):
        _, body = await post(client, "/validate", review_body(request))
        response = body["response"]
        assert response["allowed"] is True
        assert "warnings" not in response
        assert response["auditAnnotations"][key].startswith(text)
    metrics = await (await ops.get("/metrics")).text()
    for policy in ("force-delete", "quorum"):
        assert (
            f'stateful_guard_policy_decisions_total{{decision="audit",mode="audit",'
            f'policy="{policy}"}} 1.0'
        ) in metrics


def test_certificate_reloads_are_a_counter() -> None:
    from webhook.serving.metrics import Metrics

    metrics = Metrics()
    metrics.count_certificate_reloads(lambda: 3)
    text = metrics.exposition().decode()
    assert "# TYPE stateful_guard_certificate_reloads_total counter" in text
    assert "stateful_guard_certificate_reloads_total 3.0" in text
