"""The live view's list+watch under the API server's failure modes.

The real API server is in tests/e2e (every e2e test reads through this view); here a scripted
HTTP server plays the parts that are hard to provoke there: an expired resourceVersion
(410 Gone), a watch cut mid-stream, an API server that goes away, a forbidden list."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client as k8s

from policies.view import NAMESPACE
from webhook.cluster import live
from webhook.cluster.live import RESOURCES, LiveView

NAMESPACES = next(r for r in RESOURCES if r.kind == NAMESPACE)


def ns(name: str, version: int, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "resourceVersion": str(version),
            "labels": labels,
            "managedFields": [{"manager": "kubectl"}],
        }
    }


class FakeAPI:
    """Serves /api/v1/namespaces: `items` for lists (two per page), `watches` scripts, one
    per watch call: a list of event dicts, "410" for an expired version, "cut" to drop the
    connection mid-stream, "hang" to keep it open."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.version = 1
        self.watches: list[list[Any]] = []
        self.calls: list[str] = []
        self.status = 200
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                if "watch" in query:
                    api.calls.append(f"watch@{query['resourceVersion'][0]}")
                    self._watch()
                else:
                    api.calls.append("list" + ("+continue" if "continue" in query else ""))
                    self._list(query)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _list(self, query: dict[str, list[str]]) -> None:
                if api.status != 200:
                    self._send(api.status, b'{"kind":"Status","message":"forbidden"}')
                    return
                start = int(query.get("continue", ["0"])[0])
                page = api.items[start : start + 2]
                more = start + 2 < len(api.items)
                self._send(
                    200,
                    json.dumps(
                        {
                            "items": page,
                            "metadata": {
                                "resourceVersion": str(api.version),
                                "continue": str(start + 2) if more else "",
                            },
                        }
                    ).encode(),
                )

            def _watch(self) -> None:
                script = api.watches.pop(0) if api.watches else ["hang"]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for step in script:
                    if step == "cut":
                        self.wfile.write(b'5\r\n{"typ\r\n')
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)  # a real cut, mid-chunk
                        self.close_connection = True
                        return
                    if step == "hang":
                        time.sleep(2)
                        break
                    event = (
                        {"type": "ERROR", "object": {"kind": "Status", "code": 410}}
                        if step == "410"
                        else step
                    )
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    fake = FakeAPI()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def view_of(api: FakeAPI) -> LiveView:
    configuration = k8s.Configuration(host=api.url)
    view = LiveView(k8s.ApiClient(configuration), resources=[NAMESPACES], watch_timeout=5)
    view.start()
    return view


def eventually(check: Callable[[], Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_paged_list_then_watch_events(api: FakeAPI) -> None:
    api.items = [ns("a", 1), ns("b", 1), ns("c", 1, mode="audit")]
    api.version = 7
    api.watches = [
        [
            {"type": "ADDED", "object": ns("d", 8)},
            {"type": "MODIFIED", "object": ns("a", 9, **{"stateful-guard.io/mode": "warn"})},
            {"type": "DELETED", "object": ns("b", 10)},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
        ]
    ]
    view = view_of(api)
    try:
        assert view.wait_ready(5)
        eventually(lambda: view.namespace_labels("a") == {"stateful-guard.io/mode": "warn"})
        eventually(lambda: view.get(NAMESPACE, "", "b") is None)
        assert {o["metadata"]["name"] for o in view.list(NAMESPACE)} == {"a", "c", "d"}
        assert api.calls[:3] == ["list", "list+continue", "watch@7"]
        eventually(lambda: "watch@12" in api.calls)  # resumed from the bookmark, no relist
        assert api.calls.count("list") == 1
        assert "managedFields" not in view.get(NAMESPACE, "", "a")["metadata"]  # trimmed
    finally:
        view.stop()


def test_410_gone_relists(api: FakeAPI) -> None:
    api.items = [ns("a", 1)]
    api.watches = [["410"]]
    view = view_of(api)
    try:
        assert view.wait_ready(5)
        api.items = [ns("fresh", 20)]
        eventually(lambda: view.get(NAMESPACE, "", "fresh") is not None)
        assert view.get(NAMESPACE, "", "a") is None, "the relist replaced the store"
        assert view.stats()[NAMESPACE]["relists"] == 1
    finally:
        view.stop()


def test_watch_cut_mid_stream_relists_and_the_last_view_serves_meanwhile(api: FakeAPI) -> None:
    api.items = [ns("a", 1)]
    api.watches = [[{"type": "ADDED", "object": ns("b", 2)}, "cut"]]
    view = view_of(api)
    try:
        eventually(lambda: view.get(NAMESPACE, "", "b") is not None)
        api.items = [ns("a", 1), ns("b", 2), ns("c", 3)]
        eventually(lambda: view.get(NAMESPACE, "", "c") is not None)
        assert view.stats()[NAMESPACE]["relists"] >= 1
    finally:
        view.stop()


def test_unreachable_api_server_keeps_the_last_view_and_backs_off(api: FakeAPI) -> None:
    api.items = [ns("a", 1, **{"stateful-guard.io/mode": "audit"})]
    api.watches = [["cut"]]
    view = view_of(api)
    try:
        assert view.wait_ready(5)
        api.server.shutdown()
        api.server.server_close()
        time.sleep(2.5)
        assert view.has(NAMESPACE), "still synced: the last view serves"
        assert view.namespace_labels("a") == {"stateful-guard.io/mode": "audit"}
        relists = view.stats()[NAMESPACE]["relists"]
        assert 1 <= relists <= 3, f"backoff (1 s, 2 s, ...) bounds the retries: {relists}"
    finally:
        view.stop()


def test_forbidden_list_never_becomes_ready(api: FakeAPI, caplog: pytest.LogCaptureFixture) -> None:
    api.status = 403
    view = view_of(api)
    try:
        assert not view.wait_ready(1.5)
        assert not view.ready() and not view.has(NAMESPACE)
        assert any("HTTP 403" in str(getattr(r, "error", "")) for r in caplog.records)
    finally:
        view.stop()


def test_cache_metrics(api: FakeAPI) -> None:
    from webhook.serving.metrics import Metrics

    api.items = [ns("a", 1), ns("b", 1)]
    api.watches = [["410"]]
    view = view_of(api)
    try:
        eventually(lambda: view.stats()[NAMESPACE]["relists"] == 1 and view.ready())
        metrics = Metrics()
        metrics.watch_view(view)
        text = metrics.exposition().decode()
        assert 'stateful_guard_cache_objects{kind="Namespace"} 2.0' in text
        assert 'stateful_guard_cache_relists_total{kind="Namespace"} 1.0' in text
        age = next(
            line
            for line in text.splitlines()
            if line.startswith('stateful_guard_cache_age_seconds{kind="Namespace"}')
        )
        assert 0 <= float(age.split()[-1]) < 10
    finally:
        view.stop()


def test_webhook_answers_from_the_last_view_while_the_api_server_is_gone(api: FakeAPI) -> None:
    """The API server disappears after the first sync: requests are still judged from the last
    view, what it cannot tell is decided by the failure mode, and every answer comes at once
    (far inside the webhook's 5 s timeout: nothing waits on the API server)."""
    from policies.request import AdmissionRequest
    from webhook.engine import Engine

    statefulsets = next(r for r in RESOURCES if r.kind == "StatefulSet")
    sts = {
        "metadata": {
            "name": "zk",
            "namespace": "db",
            "resourceVersion": "1",
            "annotations": {"stateful-guard.io/min-replicas": "3"},
        },
        "spec": {"replicas": 3, "volumeClaimTemplates": [{"metadata": {"name": "data"}}]},
    }
    api.items = [sts]
    api.watches = [["hang"]] * 5
    view = LiveView(
        k8s.ApiClient(k8s.Configuration(host=api.url)), resources=[statefulsets], watch_timeout=5
    )
    view.start()
    try:
        assert view.wait_ready(5)
        api.server.shutdown()
        api.server.server_close()
        engine = Engine(view)

        def scale(name: str, to: int) -> AdmissionRequest:
            body = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {"name": name, "namespace": "db"},
            }
            return AdmissionRequest.model_validate(
                {
                    "uid": "u",
                    "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                    "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
                    "subResource": "scale",
                    "name": name,
                    "namespace": "db",
                    "operation": "UPDATE",
                    "object": {**body, "spec": {"replicas": to}},
                    "oldObject": {**body, "spec": {"replicas": 3}},
                }
            )

        started = time.monotonic()
        known = engine.validate(scale("zk", 1))  # judged from the last view
        unknown = engine.validate(scale("ghost", 1))  # not in the view: failure mode, closed
        assert time.monotonic() - started < 1.0
        assert not known.allowed and "min-replicas asks for 3" in known.message
        assert not unknown.allowed and "failureMode is closed" in unknown.message
    finally:
        view.stop()


def test_a_crd_not_installed_is_a_kind_with_no_objects_looked_for_again(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GuardExceptions before their CRD is applied (404): the view is ready without them, so
    the webhook serves, and they are found once the CRD is there."""
    monkeypatch.setattr(live, "OPTIONAL_RETRY", 0.2)
    optional = dataclasses.replace(NAMESPACES, optional=True)
    api.status = 404
    view = LiveView(
        k8s.ApiClient(k8s.Configuration(host=api.url)), resources=[optional], watch_timeout=5
    )
    view.start()
    try:
        assert view.wait_ready(5)
        assert list(view.list(NAMESPACE)) == []
        api.items, api.status = [ns("a", 1)], 200
        eventually(lambda: view.get(NAMESPACE, "", "a") is not None)
        assert view.ready()
    finally:
        view.stop()
    required = LiveView(
        k8s.ApiClient(k8s.Configuration(host=api.url)), resources=[NAMESPACES], watch_timeout=5
    )
    api.status = 404
    required.start()
    try:
        assert not required.wait_ready(1.5), "a built-in kind that is not served is an error"
    finally:
        required.stop()
