"""Fuzzing /mutate and /validate over real TLS: whatever arrives, the answer is a 4xx with a
JSON error or a valid AdmissionReview; never a 5xx, never a hung connection.

The quick profile runs in every test run. The long one (100,000 cases per test):
    STATEFUL_GUARD_FUZZ=long .venv/bin/pytest tests/test_fuzz.py
"""

from __future__ import annotations

import asyncio
import copy
import http.client
import json
import os
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.bodies import create_body, delete_body
from certs import files
from tests.support import EXAMPLES, load_yaml
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine
from webhook.serving.metrics import Metrics
from webhook.serving.server import MAX_BODY, ServerState, make_app

LONG = os.environ.get("STATEFUL_GUARD_FUZZ") == "long"
settings.register_profile(
    "quick",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=100_000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROFILE = settings.get_profile("long" if LONG else "quick")
VALID = {"create": json.loads(create_body()), "delete": json.loads(delete_body())}
PATHS = [
    "apiVersion",
    "kind",
    "request",
    "request.uid",
    "request.kind",
    "request.kind.kind",
    "request.resource",
    "request.resource.resource",
    "request.subResource",
    "request.name",
    "request.namespace",
    "request.operation",
    "request.userInfo",
    "request.userInfo.groups",
    "request.object",
    "request.object.metadata",
    "request.object.metadata.name",
    "request.object.metadata.annotations",
    "request.object.spec",
    "request.object.spec.template",
    "request.object.spec.template.spec.containers",
    "request.object.spec.volumeClaimTemplates",
    "request.object.spec.replicas",
    "request.object.spec.selector",
    "request.oldObject",
    "request.oldObject.metadata",
    "request.oldObject.metadata.ownerReferences",
    "request.oldObject.spec",
    "request.oldObject.spec.nodeName",
    "request.oldObject.spec.volumes",
    "request.oldObject.status",
    "request.options",
    "request.options.gracePeriodSeconds",
    "request.dryRun",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


class Server:
    """Our app over TLS on a loop in a background thread; a keep-alive client to it."""

    def __init__(self, directory: Path) -> None:
        self.certs = files.issue(directory, service="fuzz", namespace="fuzz")
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        assert self.ready.wait(10)
        self.context = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        self.connection: http.client.HTTPSConnection | None = None

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certs.cert, self.certs.key)
        view = MemoryView(load_yaml(EXAMPLES / "cluster.yaml"))
        app = make_app(ServerState(engine=Engine(view), metrics=Metrics()))
        self.runner = web.AppRunner(app, shutdown_timeout=2)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=context)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in range(2):  # a 4xx may close the connection: reconnect once
            if self.connection is None:
                self.connection = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, context=self.context, timeout=10
                )
            try:
                self.connection.request(
                    "POST", path, body=body, headers={"Content-Type": "application/json"}
                )
                response = self.connection.getresponse()
                return response.status, response.read()
            except (
                ConnectionError,
                http.client.RemoteDisconnected,
                http.client.CannotSendRequest,
                http.client.ResponseNotReady,
            ):
                self.connection.close()
                self.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.connection is not None:
            self.connection.close()
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("fuzz"))
    yield running
    running.stop()


def check(status: int, body: bytes, sent: Any = None) -> None:
    """A 4xx with a JSON error, or a 200 with a well-formed AdmissionReview for this uid."""
    assert status in (200, 400, 413, 415), (status, body[:300])
    answer = json.loads(body)
    if status != 200:
        assert isinstance(answer["error"], str) and answer["status"] == status
        return
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert isinstance(response["allowed"], bool)
    if isinstance(sent, dict):
        assert response["uid"] == sent["request"]["uid"]
    for warning in response.get("warnings", []):
        assert len(warning) <= 120 and warning.isprintable()
    if not response["allowed"]:
        assert response["status"]["message"]


def set_path(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(document)
    *parents, last = path.split(".")
    node: Any = document
    for key in parents:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            return document
        node = node[key]
    node[last] = value
    return document


@settings(PROFILE)
@given(value=json_values, endpoint=st.sampled_from(["/mutate", "/validate"]))
def test_random_json(server: Server, value: Any, endpoint: str) -> None:
    status, body = server.post(endpoint, json.dumps(value).encode())
    check(status, body)


@settings(PROFILE)
@given(
    which=st.sampled_from(sorted(VALID)),
    path=st.sampled_from(PATHS),
    value=json_values,
    endpoint=st.sampled_from(["/mutate", "/validate"]),
)
def test_wrong_types_in_every_field(
    server: Server, which: str, path: str, value: Any, endpoint: str
) -> None:
    review = set_path(VALID[which], path, value)
    status, body = server.post(endpoint, json.dumps(review).encode())
    uid = review.get("request", {}).get("uid") if isinstance(review.get("request"), dict) else None
    check(status, body, review if isinstance(uid, str) and status == 200 else None)


@settings(PROFILE)
@given(
    which=st.sampled_from(sorted(VALID)),
    cut=st.integers(min_value=0, max_value=6000),
    endpoint=st.sampled_from(["/mutate", "/validate"]),
)
def test_truncated_bodies(server: Server, which: str, cut: int, endpoint: str) -> None:
    whole = json.dumps(VALID[which]).encode()
    status, body = server.post(endpoint, whole[:cut])
    check(status, body)
    if cut < len(whole):
        assert status == 400


@settings(PROFILE)
@given(raw=st.binary(max_size=2000) | st.text().map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_raw_bytes_and_odd_unicode(server: Server, raw: bytes) -> None:
    status, body = server.post("/validate", raw)
    check(status, body)


@settings(PROFILE)
@given(text=st.text(alphabet=st.characters(), min_size=1, max_size=300))
def test_odd_unicode_in_names_and_messages(server: Server, text: str) -> None:
    review = set_path(VALID["delete"], "request.oldObject.metadata.name", text)
    review = set_path(review, "request.namespace", text[:60])
    status, body = server.post("/validate", json.dumps(review).encode())
    check(status, body, review if status == 200 else None)


@pytest.mark.parametrize("depth", [100, 1000, 100_000])
def test_deep_nesting(server: Server, depth: int) -> None:
    status, body = server.post("/validate", b"[" * depth + b"]" * depth)
    check(status, body)
    nested = (
        b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":'
        + (b'{"a":' * depth)
        + b"1"
        + b"}" * (depth + 1)
    )
    status, body = server.post("/mutate", nested)
    check(status, body)


def test_oversized(server: Server) -> None:
    status, body = server.post("/validate", b"{" + b" " * MAX_BODY + b"}")
    assert status == 413
    check(status, body)
