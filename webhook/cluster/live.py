"""A cluster view fed by list+watch from the API server, off the event loop.

One background thread per kind lists (paged), then watches from the list's resourceVersion
with bookmarks; a watch that ends is resumed, a 410 Gone relists, any other error relists
after a backoff (1 s doubling to 30 s). Admission requests only read the in-memory stores:
they never wait on the API server. While it is unreachable, the last view keeps serving.

Objects are trimmed to the fields policies read (`trim`), so the cache stays small. A live
audit lists whole objects instead (`cluster_objects`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from policies import exceptions
from policies.objects import claim_volumes
from policies.view import (
    CLAIM,
    DEPLOYMENT,
    DISRUPTION_BUDGET,
    GUARD_EXCEPTION,
    NAMESPACE,
    NODE,
    POD,
    REPLICA_SET,
    SERVICE,
    STATEFUL_SET,
    STORAGE_CLASS,
    choose_default_storage_class,
)

log = logging.getLogger("stateful_guard.live")

Obj = dict[str, Any]
_Key = tuple[str, str]
DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
OUR_PREFIX = "stateful-guard.io/"


def _pick(source: Mapping[str, Any] | None, *keys: str) -> Obj:
    source = source or {}
    return {k: source[k] for k in keys if k in source}


def _metadata(obj: Obj, *extra: str) -> Obj:
    meta = obj.get("metadata") or {}
    kept = _pick(meta, "name", "namespace", "uid", "labels", "creationTimestamp", *extra)
    annotations = meta.get("annotations")
    if annotations:
        kept["annotations"] = {k: v for k, v in annotations.items() if k not in DROPPED_ANNOTATIONS}
    return kept


def _claim_volumes(pod_spec: Mapping[str, Any] | None) -> list[Obj]:
    """A pod spec's `persistentVolumeClaim` volumes, name and claim only (as policies read
    them: `policies.objects.claim_volumes`)."""
    return [
        {"name": volume, "persistentVolumeClaim": {"claimName": claim}}
        for volume, claim in claim_volumes(pod_spec)
    ]


def _ready(status: Mapping[str, Any]) -> list[Obj]:
    """Of a pod's or node's conditions, only Ready (`policies.objects.ready_condition`)."""
    return [
        {"type": "Ready", "status": c.get("status")}
        for c in status.get("conditions") or []
        if isinstance(c, dict) and c.get("type") == "Ready"
    ]


def trim_service(obj: Obj) -> Obj:
    return {
        "metadata": _metadata(obj, "ownerReferences"),
        "spec": _pick(obj.get("spec"), "clusterIP", "type", "selector"),
    }


def trim_storage_class(obj: Obj) -> Obj:
    return {
        "metadata": _metadata(obj),
        **_pick(obj, "provisioner", "reclaimPolicy", "allowVolumeExpansion", "volumeBindingMode"),
    }


def trim_stateful_set(obj: Obj) -> Obj:
    spec = obj.get("spec") or {}
    kept = _pick(
        spec,
        "replicas",
        "serviceName",
        "selector",
        "ordinals",
        "podManagementPolicy",
        "persistentVolumeClaimRetentionPolicy",
    )
    template = spec.get("template") or {}
    kept["template"] = {
        "metadata": _pick(template.get("metadata"), "labels"),
        # What the quorum profile reads (images, literal env, command line) for a scale
        # request, which carries none of it; the ports a managed Service publishes.
        "spec": {
            "containers": [
                {
                    **_pick(c, "name", "image", "command", "args", "ports"),
                    "env": [_pick(e, "name", "value") for e in c.get("env") or [] if "value" in e],
                }
                for c in (template.get("spec") or {}).get("containers") or []
            ],
            # What shared-volume reads for a scale request: the claims every replica mounts.
            "volumes": _claim_volumes(template.get("spec")),
        },
    }
    kept["volumeClaimTemplates"] = [
        {
            "metadata": _pick(t.get("metadata"), "name"),
            "spec": _pick(t.get("spec"), "accessModes", "storageClassName"),
        }
        for t in spec.get("volumeClaimTemplates") or []
    ]
    return {
        "metadata": _metadata(obj),
        "spec": kept,
        "status": _pick(obj.get("status"), "replicas", "readyReplicas"),
    }


def trim_claim(obj: Obj) -> Obj:
    return {
        "metadata": _metadata(obj, "finalizers", "deletionTimestamp"),
        "spec": _pick(obj.get("spec"), "accessModes", "storageClassName", "volumeName"),
        "status": _pick(obj.get("status"), "phase"),
    }


def trim_disruption_budget(obj: Obj) -> Obj:
    return {
        "metadata": _metadata(obj),
        "spec": _pick(
            obj.get("spec"),
            "selector",
            "minAvailable",
            "maxUnavailable",
            "unhealthyPodEvictionPolicy",  # ours are kept in step with it
        ),
    }


def trim_pod(obj: Obj) -> Obj:
    """A pod as force-delete, pvc-protection and quorum read it: whose it is, where it runs,
    which claims it mounts, whether it is Ready. Every pod in the cluster is cached, so this
    keeps a few hundred bytes (no other annotations, no containers)."""
    meta = obj.get("metadata") or {}
    kept = _pick(meta, "name", "namespace", "uid", "labels", "ownerReferences", "deletionTimestamp")
    ours = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(OUR_PREFIX)}
    if ours:
        kept["annotations"] = ours
    spec = obj.get("spec") or {}
    volumes = _claim_volumes(spec)
    status = obj.get("status") or {}
    # Of its conditions only Ready: quorum counts the members that serve.
    ready = _ready(status)
    return {
        "metadata": kept,
        "spec": {**_pick(spec, "nodeName"), **({"volumes": volumes} if volumes else {})},
        "status": {**_pick(status, "phase"), **({"conditions": ready} if ready else {})},
    }


def trim_workload(obj: Obj) -> Obj:
    """A Deployment or ReplicaSet as shared-volume reads it for a scale request."""
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    return {
        "metadata": _pick(obj.get("metadata"), "name", "namespace", "uid"),
        "spec": {
            **_pick(spec, "replicas"),
            "template": {"spec": {"volumes": _claim_volumes(template.get("spec"))}},
        },
    }


def trim_namespace(obj: Obj) -> Obj:
    return {"metadata": _pick(obj.get("metadata"), "name", "labels")}


def trim_node(obj: Obj) -> Obj:
    """A node as force-delete reads it: its name, taints (the out-of-service taint fences it)
    and Ready condition (a denial says when its kubelet is not reporting)."""
    spec = obj.get("spec") or {}
    taints = [
        _pick(t, "key", "value", "effect") for t in spec.get("taints") or [] if isinstance(t, dict)
    ]
    ready = _ready(obj.get("status") or {})
    return {
        "metadata": _pick(obj.get("metadata"), "name"),
        "spec": {"taints": taints},
        **({"status": {"conditions": ready}} if ready else {}),
    }


def trim_guard_exception(obj: Obj) -> Obj:
    """A GuardException whole, but for what the API server keeps for itself (few, small)."""
    return {"metadata": _metadata(obj), "spec": obj.get("spec") or {}}


@dataclass(frozen=True)
class Resource:
    kind: str
    path: str  # the collection's URL path, all namespaces
    trim: Callable[[Obj], Obj]
    # A kind our own CRD defines: until the CRD is installed (404) it has no objects, and the
    # view is ready without it; it is looked for again every OPTIONAL_RETRY seconds.
    optional: bool = False


RESOURCES = (
    Resource(SERVICE, "/api/v1/services", trim_service),
    Resource(STORAGE_CLASS, "/apis/storage.k8s.io/v1/storageclasses", trim_storage_class),
    Resource(STATEFUL_SET, "/apis/apps/v1/statefulsets", trim_stateful_set),
    Resource(CLAIM, "/api/v1/persistentvolumeclaims", trim_claim),
    Resource(NAMESPACE, "/api/v1/namespaces", trim_namespace),
    Resource(DISRUPTION_BUDGET, "/apis/policy/v1/poddisruptionbudgets", trim_disruption_budget),
    Resource(POD, "/api/v1/pods", trim_pod),
    Resource(DEPLOYMENT, "/apis/apps/v1/deployments", trim_workload),
    Resource(REPLICA_SET, "/apis/apps/v1/replicasets", trim_workload),
    Resource(NODE, "/api/v1/nodes", trim_node),
    Resource(GUARD_EXCEPTION, exceptions.PATH, trim_guard_exception, optional=True),
)
OPTIONAL_KINDS = frozenset(r.kind for r in RESOURCES if r.optional)
OPTIONAL_RETRY = 10.0


class _Gone(Exception):
    """The resourceVersion is too old (HTTP 410): list again."""


class NotServed(Exception):
    """The API server does not serve this collection (HTTP 404): a CRD not installed."""


def api_client(
    *, kubeconfig: str | None = None, in_cluster: bool = False, retries: int | None = None
) -> k8s.ApiClient:
    """A client for the cluster; `retries` for connection errors (urllib3's default: 3)."""
    configuration = k8s.Configuration()
    if retries is not None:
        configuration.retries = retries
    if in_cluster:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    return k8s.ApiClient(configuration)


def get(
    client: k8s.ApiClient,
    path: str,
    query: list[tuple[str, Any]],
    *,
    timeout: tuple[float, float] = (10, 60),
) -> Any:
    """GET a collection: the raw urllib3 response, its body not yet read."""
    request = client.param_serialize(
        "GET",
        path,
        query_params=query,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = client.call_api(*request, _request_timeout=timeout).response
    if response.status == 410:
        response.release_conn()
        raise _Gone
    if response.status == 404:
        response.release_conn()
        raise NotServed(path)
    if not 200 <= response.status < 300:
        body = response.data[:500].decode(errors="replace")
        response.release_conn()
        raise RuntimeError(f"GET {path}: HTTP {response.status}: {body}")
    return response


def pages(
    client: k8s.ApiClient,
    path: str,
    page_size: int = 500,
    selectors: tuple[tuple[str, str], ...] = (),
) -> Iterator[Obj]:
    """A collection listed in pages (`limit` and `continue`), each page as a dict;
    `selectors`: query parameters such as `("fieldSelector", "source=x")`."""
    token = ""
    while True:
        query: list[tuple[str, Any]] = [("limit", page_size), *selectors]
        if token:
            query.append(("continue", token))
        page: Obj = orjson.loads(get(client, path, query).data)
        yield page
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return


# What a live audit lists, whole (the judged kinds and what the policies look up).
CLUSTER_PATHS = {
    "StatefulSet": ("apps/v1", "/apis/apps/v1/statefulsets"),
    "PersistentVolumeClaim": ("v1", "/api/v1/persistentvolumeclaims"),
    "Deployment": ("apps/v1", "/apis/apps/v1/deployments"),
    "ReplicaSet": ("apps/v1", "/apis/apps/v1/replicasets"),
    "Service": ("v1", "/api/v1/services"),
    "StorageClass": ("storage.k8s.io/v1", "/apis/storage.k8s.io/v1/storageclasses"),
    "Namespace": ("v1", "/api/v1/namespaces"),
    "PodDisruptionBudget": ("policy/v1", "/apis/policy/v1/poddisruptionbudgets"),
    GUARD_EXCEPTION: (exceptions.API_VERSION, exceptions.PATH),
}


def cluster_objects(client: k8s.ApiClient, page_size: int = 500) -> list[dict[str, Any]]:
    """Every object of the kinds above, listed in pages. List items carry no kind: set it.
    The kinds our own CRDs define, where those are installed."""
    objects = []
    for kind, (api_version, path) in CLUSTER_PATHS.items():
        try:
            for page in pages(client, path, page_size):
                for item in page.get("items") or []:
                    objects.append({"apiVersion": api_version, "kind": kind, **item})
        except NotServed:
            if kind not in OPTIONAL_KINDS:
                raise
    return objects


class _Reflector:
    """Keeps one kind's store in step with the API server."""

    def __init__(self, view: LiveView, resource: Resource) -> None:
        self.view = view
        self.resource = resource
        self.store: dict[_Key, bytes] = {}
        self.synced = threading.Event()
        self.relists = 0
        self.last_event = 0.0
        self._response: Any = None

    def _key(self, obj: Mapping[str, Any]) -> _Key:
        meta = obj.get("metadata") or {}
        return str(meta.get("namespace") or ""), str(meta.get("name") or "")

    def _get(self, query: list[tuple[str, Any]], *, stream: bool = False) -> Any:
        timeout = (10, self.view.watch_timeout + 30) if stream else (10, 60)
        return get(self.view.client, self.resource.path, query, timeout=timeout)

    def pack(self, obj: Obj) -> bytes:
        """What the cache keeps of an object: the trimmed fields as compact JSON. Bytes take a
        third of the memory of nested dicts, and decoding one on lookup costs microseconds."""
        # orjson's bytes keep its 4 KiB working allocation: copy to an exact-size object.
        return memoryview(orjson.dumps(self.resource.trim(obj))).tobytes()

    def replace(self, items: Iterable[Obj]) -> None:
        """Swap the whole store (readers never see half a list)."""
        self.store = {self._key(item): self.pack(item) for item in items}
        self.last_event = time.monotonic()

    def list(self) -> str:
        items: list[Obj] = []
        version = ""
        for page in pages(self.view.client, self.resource.path, self.view.page_size):
            items.extend(page.get("items") or [])
            version = str((page.get("metadata") or {}).get("resourceVersion", ""))
        self.replace(items)
        return version

    def watch(self, version: str) -> str:
        query = [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", self.view.watch_timeout),
        ]
        self._response = response = self._get(query, stream=True)
        try:
            for event in _lines(response):
                kind, obj = event.get("type"), event.get("object") or {}
                self.last_event = time.monotonic()
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED"):
                    self.store[self._key(obj)] = self.pack(obj)
                elif kind == "DELETED":
                    self.store.pop(self._key(obj), None)
                if self.view.stopping.is_set():
                    break
        finally:
            self._response = None
            response.release_conn()
        return version

    def run(self) -> None:
        backoff = 1.0
        while not self.view.stopping.is_set():
            try:
                version = self.list()
                self.synced.set()
                backoff = 1.0
                while not self.view.stopping.is_set():
                    version = self.watch(version)
            except _Gone:
                self.relists += 1
                log.info("watch expired, listing again", extra={"kind": self.resource.kind})
            except Exception as exc:
                if self.view.stopping.is_set():
                    return
                if isinstance(exc, NotServed) and self.resource.optional:
                    self._not_served()
                    continue
                self.relists += 1
                log.warning(
                    "list/watch failed; serving the last view and retrying",
                    extra={"kind": self.resource.kind, "error": str(exc), "retry_in": backoff},
                )
                self.view.stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _not_served(self) -> None:
        """Our CRD is not installed (or was deleted, taking its objects along): none of its
        kind, and the view is ready without them; look again later."""
        if not self.synced.is_set():
            log.info(
                "not served (CRD not installed): none; looking again later",
                extra={"kind": self.resource.kind, "retry_in": OPTIONAL_RETRY},
            )
        self.replace([])
        self.synced.set()
        self.view.stopping.wait(OPTIONAL_RETRY)

    def interrupt(self) -> None:
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # best effort on the way out
                response.shutdown()


def _lines(response: Any) -> Iterator[Obj]:
    buffer = b""
    for chunk in response.stream(64 * 1024, decode_content=False):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            if line.strip():
                yield orjson.loads(line)
    if buffer.strip():
        yield orjson.loads(buffer)


class LiveView:
    """The ClusterView of a live cluster, kept by list+watch in background threads."""

    def __init__(
        self,
        client: k8s.ApiClient,
        *,
        resources: Iterable[Resource] = RESOURCES,
        page_size: int = 500,
        watch_timeout: int = 300,
    ) -> None:
        self.client = client
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.stopping = threading.Event()
        self._reflectors = {r.kind: _Reflector(self, r) for r in resources}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for kind, reflector in self._reflectors.items():
            thread = threading.Thread(target=reflector.run, name=f"watch-{kind}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for reflector in self._reflectors.values():
            reflector.interrupt()
        for thread in self._threads:
            thread.join(timeout=5)

    def ready(self) -> bool:
        """True once every kind has been listed once (for /readyz)."""
        return all(r.synced.is_set() for r in self._reflectors.values())

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(
            r.synced.wait(max(0.0, deadline - time.monotonic())) for r in self._reflectors.values()
        )

    def stats(self) -> dict[str, dict[str, float]]:
        now = time.monotonic()
        return {
            kind: {
                "objects": len(r.store),
                "relists": r.relists,
                "age_seconds": now - r.last_event if r.last_event else -1.0,
            }
            for kind, r in self._reflectors.items()
        }

    # ClusterView

    def has(self, kind: str) -> bool:
        reflector = self._reflectors.get(kind)
        return reflector is not None and reflector.synced.is_set()

    def get(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        reflector = self._reflectors.get(kind)
        packed = reflector.store.get((namespace, name)) if reflector else None
        return None if packed is None else cast(Obj, orjson.loads(packed))

    def list(self, kind: str, namespace: str | None = None) -> Iterable[Mapping[str, Any]]:
        reflector = self._reflectors.get(kind)
        if reflector is None:
            return []
        items = list(reflector.store.items())
        return [
            orjson.loads(packed)
            for (ns, _), packed in items
            if namespace is None or ns == namespace
        ]

    def load(self, kind: str, objects: Iterable[Obj]) -> None:
        """Fill a kind's store as a list from the API server would (benchmarks, tests)."""
        self._reflectors[kind].replace(objects)
        self._reflectors[kind].synced.set()

    def default_storage_class(self) -> Mapping[str, Any] | None:
        return choose_default_storage_class(self.list(STORAGE_CLASS))

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        obj = self.get(NAMESPACE, "", namespace)
        labels = (obj or {}).get("metadata", {}).get("labels")
        return labels if isinstance(labels, dict) else {}  # (an ABC check costs 10x)
