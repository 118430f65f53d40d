"""The benchmark's parts do what it claims (no timings here: speed is measured in bench/)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aiohttp import web

from bench import apiserver, baseline
from bench.bodies import create_body, delete_body
from webhook.serving.admission import parse_review


def test_bodies_are_the_sizes_the_issue_names() -> None:
    create, delete = create_body(), delete_body()
    assert 5500 <= len(create) <= 6500, "a ~6 KB StatefulSet CREATE"
    assert 3500 <= len(delete) <= 4500, "a ~4 KB pod DELETE"
    assert parse_review(create).request.operation == "CREATE"
    assert parse_review(delete).request.options == {
        "kind": "DeleteOptions",
        "apiVersion": "meta.k8s.io/v1",
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Background",
    }


async def test_baseline_parses_and_allows(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_post("/validate", baseline.review)
    client = await aiohttp_client(app)
    body = delete_body()
    response = await client.post(
        "/validate", data=body, headers={"Content-Type": "application/json"}
    )
    answer = await response.json()
    assert answer["response"] == {"uid": json.loads(body)["request"]["uid"], "allowed": True}


async def test_baseline_answers_mutations_with_a_given_patch(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    patch = [{"op": "add", "path": "/spec/serviceName", "value": "db-0"}]
    app = web.Application()
    app[baseline.PATCH] = base64.b64encode(json.dumps(patch).encode()).decode()
    app.router.add_post("/mutate", baseline.review)
    app.router.add_post("/validate", baseline.review)
    client = await aiohttp_client(app)
    headers = {"Content-Type": "application/json"}
    mutated = await (await client.post("/mutate", data=create_body(), headers=headers)).json()
    assert json.loads(base64.b64decode(mutated["response"]["patch"])) == patch
    assert mutated["response"]["patchType"] == "JSONPatch"
    validated = await (await client.post("/validate", data=create_body(), headers=headers)).json()
    assert "patch" not in validated["response"]


def test_per_call_webhook_time_from_the_api_servers_metrics() -> None:
    """The API server's histogram, summed over its labels, gives the mean per call between
    two readings; a webhook not called in between is left out."""

    def metrics(mutate: tuple[float, int], pods: tuple[float, int]) -> str:
        family = "apiserver_admission_webhook_admission_duration_seconds"
        lines = [f"# HELP {family} h", f"# TYPE {family} histogram"]
        for name, op, (seconds, calls) in (
            ("mutate.stateful-guard.io", "CREATE", mutate),
            ("pods.stateful-guard.io", "DELETE", pods),
        ):
            for rejected, share in (("false", 0.75), ("true", 0.25)):  # summed over labels
                labels = f'name="{name}",operation="{op}",rejected="{rejected}",type="admit"'
                lines += [
                    f'{family}_bucket{{{labels},le="+Inf"}} {calls * share}',
                    f"{family}_sum{{{labels}}} {seconds * share}",
                    f"{family}_count{{{labels}}} {calls * share}",
                ]
        return "\n".join(lines) + "\n"

    before = apiserver.webhook_seconds(metrics((1.0, 100), (0.5, 40)))
    after = apiserver.webhook_seconds(metrics((1.3, 200), (0.5, 40)))
    assert before["mutate.stateful-guard.io CREATE"] == (1.0, 100)
    calls = apiserver.webhook_calls(before, after, rounds=50)
    assert calls.keys() == {"mutate.stateful-guard.io CREATE"}
    assert calls["mutate.stateful-guard.io CREATE"] == pytest.approx(
        {"ms_per_call": 3.0, "calls_per_request": 2.0}
    )


def test_api_server_figures_are_medians_of_the_turns() -> None:
    def turn(create: float, ms: float, extra: bool) -> dict[str, Any]:
        webhooks = {"pods DELETE": {"ms_per_call": ms, "calls_per_request": 2.0}}
        if extra:
            webhooks["mutate CREATE"] = {"ms_per_call": 9.0, "calls_per_request": 1.0}
        return {"create_p50_ms": create, "webhooks": webhooks}

    result = apiserver.medians([turn(5.0, 1.0, True), turn(9.0, 3.0, False), turn(6.0, 1.5, True)])
    assert result == {
        "create_p50_ms": 6.0,
        "webhooks": {"pods DELETE": {"ms_per_call": 1.5, "calls_per_request": 2.0}},
    }


def test_peers_read_each_answer_in_the_rules_terms() -> None:
    from bench.peers import outcome

    assert outcome("force-delete", 403, {"message": "denied"}) == "refused"
    assert outcome("force-delete", 200, {}) == "allowed"
    patched = {"spec": {"volumeClaimTemplates": [{"spec": {"storageClassName": "fast"}}]}}
    assert outcome("claim-class", 201, patched) == "patched"
    assert outcome("claim-class", 201, {"spec": {"volumeClaimTemplates": [{"spec": {}}]}}) == (
        "allowed"
    )
    assert outcome("missing-class", 500, {}) == "error 500"


def test_peers_table_is_added_latency_against_no_engine_and_ours() -> None:
    from bench.peers import table

    def cell(p50: float, **extra: Any) -> dict[str, Any]:
        return {"p50_ms": p50, "p99_ms": 2 * p50, "rps": 100.0, "outcomes": {"refused": 10},
                "apiserver_cpu_s_per_1000": 1.0, **extra}  # fmt: skip

    results = {
        "engines": {
            "no engine": {"rules": [], "cells": {"force-delete c=1": cell(2.0)}},
            "stateful-guard": {
                "rules": ["force-delete"],
                "cells": {
                    "force-delete c=1": cell(3.0, engine_cpu_s_per_1000=0.5),
                    "peak_rss_mib": 80,
                },
            },
            "kopf webhook": {
                "rules": ["force-delete"],
                "cells": {
                    "force-delete c=1": cell(5.0, engine_cpu_s_per_1000=2.0),
                    "peak_rss_mib": 120,
                },
            },
        },
        "skipped": {"Kyverno": "not built"},
    }
    lines = table(results).splitlines()
    [ours] = [line for line in lines if "stateful-guard" in line]
    [kopf] = [line for line in lines if "kopf webhook" in line]
    assert ours.split()[3:6] == ["refused", "1.00", "2.00"]  # +p50, +p99 over no engine
    assert kopf.split()[-1] == "3.00x"  # kopf adds 3 ms where ours adds 1
    assert lines[-1] == "Kyverno: not built"
