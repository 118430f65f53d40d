"""The benchmark's parts do what it claims (no timings here: speed is measured in bench/)."""

from __future__ import annotations

import json

from aiohttp import web

from bench import baseline
from bench.bodies import create_body, delete_body
from webhook.admission import parse_review


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
