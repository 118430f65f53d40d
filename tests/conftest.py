from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from tests.support import EXAMPLES, load_yaml
from webhook.cluster.memory import MemoryView
from webhook.engine import Engine
from webhook.serving.metrics import Metrics
from webhook.serving.server import ServerState, make_app, make_ops_app

ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def state() -> ServerState:
    """A server over a small cluster: the examples plus a default StorageClass."""
    objects = [
        doc
        for f in ("random-generator.yaml", "nginx-web.yaml")
        for doc in load_yaml(EXAMPLES / f)
        if doc["kind"] == "Service"
    ]
    objects.append(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": "standard",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "example.com/csi",
            "reclaimPolicy": "Retain",
            "allowVolumeExpansion": True,
        }
    )
    return ServerState(engine=Engine(MemoryView(objects)), metrics=Metrics())


@pytest.fixture
async def client(aiohttp_client: ClientFactory, state: ServerState) -> TestClient:
    return await aiohttp_client(make_app(state))


@pytest.fixture
async def ops(aiohttp_client: ClientFactory, state: ServerState) -> TestClient:
    """The plain-HTTP port of the same server: probes and /metrics."""
    return await aiohttp_client(make_ops_app(state))
