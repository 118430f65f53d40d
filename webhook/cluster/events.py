"""Durable records of data decisions: Kubernetes Events on the objects.

Every DELETE, eviction and scale that a data policy (force-delete, pvc-protection, quorum)
refuses, or in warn and audit modes would refuse, becomes an Event on the object: reason
`Refused` or `WouldRefuse`, the policy, the user and the one-line finding, so "who tried to
delete what, and what stopped it" has an answer in the cluster (`kubectl get events
--field-selector source=stateful-guard`), and the background audit counts them in its
PolicyReports. Every use of a GuardException, whatever the policy and the request, is an
Event too: reason `Excepted`, naming the exception. Dry runs record nothing.

Never in the request's path: admission only queues the record (bounded; when full, the
oldest go and are counted); a background task writes them. Repeats of one record (a drain
retries every 5 s) within ten minutes raise the Event's count instead of making a new one,
as client-go's recorder does.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client as k8s

from policies import exceptions
from policies.objects import metadata, ordinal_start, replicas
from policies.registry import POLICIES
from policies.request import AdmissionRequest
from policies.view import POD, ClusterView
from webhook.cluster.live import Obj, pages
from webhook.engine import Outcome, one_line

log = logging.getLogger("stateful_guard.events")

SOURCE = "stateful-guard"  # source.component: `--field-selector source=stateful-guard`
REPORTING_CONTROLLER = "stateful-guard.io/webhook"
POLICY_ANNOTATION = "stateful-guard.io/policy"
USER_ANNOTATION = "stateful-guard.io/user"
MODE_ANNOTATION = "stateful-guard.io/mode"
EXCEPTION_ANNOTATION = "stateful-guard.io/exception"
DATA_POLICIES = frozenset(p.id for p in POLICIES if p.guards_data)
REPEAT_WINDOW = 600.0  # seconds in which a repeat counts on the same Event
QUEUE_LIMIT = 1000
MESSAGE_LIMIT = 1000  # events.k8s.io caps a note at 1 kB


@dataclass(frozen=True, slots=True)
class Record:
    """One refused (or would-be-refused, or excepted) attempt, as its Event will say it."""

    namespace: str
    api_version: str
    kind: str
    name: str
    uid: str
    action: str  # Delete | Evict | Scale; for an exception's use also Create | Update
    reason: str  # Refused | WouldRefuse | Excepted
    policy: str
    mode: str
    user: str
    message: str
    exception: str = ""  # namespace/name of the GuardException used


def action_of(request: AdmissionRequest) -> str | None:
    """Delete, Evict or Scale, or None for a request that takes nothing away."""
    if request.operation == "DELETE":
        return "Delete"
    if request.operation == "CREATE" and request.sub_resource == "eviction":
        return "Evict"
    if request.operation == "UPDATE" and request.resource.resource == "statefulsets":
        if request.sub_resource == "scale":
            return "Scale"
        old, new = request.old_object, request.object
        if replicas(new) < replicas(old) or ordinal_start(new) != ordinal_start(old):
            return "Scale"
    return None


def _subject(
    request: AdmissionRequest, action: str, view: ClusterView | None
) -> tuple[str, str, str]:
    """The object the attempt was on: api version, kind, uid (an eviction's is its pod, whose
    uid the view knows; a scale's its set, whose uid the Scale carries). With the uid,
    `kubectl describe` shows the Event."""
    obj: Mapping[str, Any] | None = (
        request.old_object if request.operation == "DELETE" else request.object
    )
    if action == "Evict":
        obj = view.get(POD, request.namespace, request.object_name) if view else None
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    uid = str(meta.get("uid") or "") if isinstance(meta, Mapping) else ""
    if action == "Evict":
        return "v1", "Pod", uid
    if action == "Scale":
        return "apps/v1", "StatefulSet", uid
    kind = request.kind
    return f"{kind.group}/{kind.version}" if kind.group else kind.version, kind.kind, uid


def _known(view: ClusterView, kind: str, namespace: str, name: str, uid: str) -> bool:
    """Whether the view holds the object (with that uid): a review forged by a caller other
    than the API server (where no client certificate is required) can put on record only
    objects that exist."""
    if not view.has(kind):
        return True  # a view without that kind cannot tell
    found = view.get(kind, namespace, name)
    held = str(metadata(found).get("uid") or "")
    return found is not None and (not uid or not held or uid == held)


def records(
    request: AdmissionRequest, outcome: Outcome, view: ClusterView | None = None
) -> list[Record]:
    """What one answered request leaves on record (most: nothing)."""
    found = [v for v in outcome.verdicts if v.excepted or (v.denied and v.policy in DATA_POLICIES)]
    if not found or request.dry_run:
        return []
    action = action_of(request)
    if action is None:
        # Only an exception's use is on record whatever the request (a template, a relabel).
        found = [v for v in found if v.excepted]
        if not found:
            return []
        action = request.operation.title()
    api_version, kind, uid = _subject(request, action, view)
    # (an object being created is not in the view yet; the exception it used is)
    if (
        view is not None
        and action != "Create"
        and not _known(view, kind, request.namespace, request.object_name, uid)
    ):
        return []
    return [
        Record(
            namespace=request.namespace,
            api_version=api_version,
            kind=kind,
            name=request.object_name,
            uid=uid,
            action=action,
            reason="Excepted" if v.excepted else "Refused" if v.refusals else "WouldRefuse",
            policy=v.policy,
            mode=v.mode.value,
            user=request.user_info.username,
            message=" ".join(v.denied),
            exception=v.excepted,
        )
        for v in found
    ]


VERBS = {
    "Delete": "deleting",
    "Evict": "evicting",
    "Scale": "scaling",
    "Create": "creating",
    "Update": "updating",
}


def _stamp(when: float) -> str:
    return exceptions.stamp(dt.datetime.fromtimestamp(when, dt.UTC))


def event_body(record: Record, *, instance: str, when: float) -> dict[str, Any]:
    """A core/v1 Event for `record`, first seen `when`."""
    verb = VERBS[record.action]
    outcome = (
        f"allowed, by GuardException {record.exception},"
        if record.exception
        else "refused"
        if record.reason == "Refused"
        else f"would refuse ({record.mode} mode)"
    )
    message = one_line(
        f"[{record.policy}] {outcome} {record.user or 'an anonymous user'} {verb} "
        f"{record.kind} {record.name}: {record.message}",
        MESSAGE_LIMIT,
    )
    # Events of cluster-scoped objects live in `default`, as the API server expects.
    namespace = record.namespace or "default"
    involved = {"apiVersion": record.api_version, "kind": record.kind, "name": record.name}
    if record.namespace:
        involved["namespace"] = record.namespace
    if record.uid:
        involved["uid"] = record.uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{record.name}.{time.time_ns():x}"[-253:].lstrip("."),
            "namespace": namespace,
            "annotations": {
                POLICY_ANNOTATION: record.policy,
                USER_ANNOTATION: record.user,
                MODE_ANNOTATION: record.mode,
                **({EXCEPTION_ANNOTATION: record.exception} if record.exception else {}),
            },
        },
        "involvedObject": involved,
        "reason": record.reason,
        "action": record.action,
        "message": message,
        "type": "Warning",
        "source": {"component": SOURCE},
        "reportingComponent": REPORTING_CONTROLLER,
        "reportingInstance": instance[:128],
        "firstTimestamp": _stamp(when),
        "lastTimestamp": _stamp(when),
        "count": 1,
    }


class EventRecorder:
    """Queues records from admission; `run` writes them as Events in the background."""

    def __init__(
        self,
        api: k8s.ApiClient,
        view: ClusterView,
        *,
        instance: str,
        count: Callable[[str], None] = lambda _: None,
    ) -> None:
        """`count` is told each record's result: written, repeated, failed or dropped."""
        self.core = k8s.CoreV1Api(api)
        self.view = view
        self.instance = instance
        self._queue: collections.deque[Record] = collections.deque(maxlen=QUEUE_LIMIT)
        self._wake = asyncio.Event()
        self._count = count
        # record -> (namespace, Event name, count, last written): repeats raise the count
        self._seen: collections.OrderedDict[Record, tuple[str, str, int, float]] = (
            collections.OrderedDict()
        )

    def submit(self, request: AdmissionRequest, outcome: Outcome) -> None:
        """From the request handler: cheap, never blocks, never raises."""
        if not any(v.denied for v in outcome.verdicts):
            return  # (an excepted verdict keeps what it waived in `denied`)
        try:
            found = records(request, outcome, self.view)
        except Exception:  # a record is worth less than the answer
            log.exception("cannot make an Event record", extra={"uid": request.uid})
            return
        for record in found:
            if len(self._queue) == self._queue.maxlen:
                self._count("dropped")
            self._queue.append(record)
        if found:
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                record = self._queue.popleft()
                try:
                    self._count(await asyncio.to_thread(self.write, record))
                except Exception as exc:
                    self._count("failed")
                    log.warning(
                        "cannot write an Event",
                        extra={"object": f"{record.namespace}/{record.name}", "error": repr(exc)},
                    )

    def write(self, record: Record, *, now: float | None = None) -> str:
        """Create the record's Event, or raise the count of the one made for it within the
        window; returns which: written or repeated. Blocking."""
        now = time.time() if now is None else now
        seen = self._seen.get(record)
        if seen is not None and now - seen[3] < REPEAT_WINDOW:
            namespace, name, count, _ = seen
            try:
                self.core.patch_namespaced_event(
                    name,
                    namespace,
                    {"count": count + 1, "lastTimestamp": _stamp(now)},
                    _content_type="application/merge-patch+json",
                )
            except k8s.ApiException as exc:
                if exc.status != 404:  # expired (the API server keeps Events an hour)
                    raise
            else:
                self._remember(record, (namespace, name, count + 1, now))
                return "repeated"
        body = event_body(record, instance=self.instance, when=now)
        namespace = body["metadata"]["namespace"]
        self.core.create_namespaced_event(namespace, cast("k8s.CoreV1Event", body))
        self._remember(record, (namespace, body["metadata"]["name"], 1, now))
        return "written"

    def _remember(self, record: Record, entry: tuple[str, str, int, float]) -> None:
        self._seen[record] = entry
        self._seen.move_to_end(record)
        while len(self._seen) > 4 * QUEUE_LIMIT:
            self._seen.popitem(last=False)


def recorded(api: k8s.ApiClient) -> list[Obj]:
    """Our Events in the cluster (every replica's), as plain dicts. Blocking."""
    selector = ("fieldSelector", f"source={SOURCE}")
    return [
        item
        for page in pages(api, "/api/v1/events", selectors=(selector,))
        for item in page.get("items") or []
    ]
