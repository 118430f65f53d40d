"""Prometheus metrics, on a registry of their own (one per app, so tests stay independent)."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from webhook.cluster.live import LiveView
from webhook.engine import Outcome

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BOUNDS = [str(b) for b in LATENCY_BUCKETS] + ["+Inf"]  # the `le` labels


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.admissions = _Admissions()
        self.registry.register(self.admissions)
        self.managed_objects = Counter(
            "stateful_guard_managed_objects",
            "What the leader did to the headless Services and PodDisruptionBudgets it manages "
            "(created, exists, adopted, updated, deleted).",
            ["kind", "action"],
            registry=self.registry,
        )
        self.events = Counter(
            "stateful_guard_events",
            "Events recording refused deletes, evictions and scales (written, repeated: a "
            "repeat raised an Event's count, failed, dropped: the queue was full).",
            ["result"],
            registry=self.registry,
        )
        self._reloads = _Reloads()
        self.registry.register(self._reloads)

    def count_certificate_reloads(self, reloads: Callable[[], int]) -> None:
        """Export `reloads()` (times the serving certificate was reloaded) as a counter."""
        self._reloads.count = reloads

    def watch_view(self, view: LiveView) -> None:
        """Export the live view's cache: objects, age since the last event, relists."""
        self.registry.register(_ViewCollector(view))

    def record(self, endpoint: str, code: int, seconds: float, outcome: Outcome | None) -> None:
        self.admissions.record(endpoint, code, seconds, outcome)

    def answered(self) -> int:
        """AdmissionReviews answered so far (HTTP 200): proof that a caller reaches us."""
        return sum(n for (_, code), n in self.admissions.requests.items() if code == "200")

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Admissions(Collector):
    """Requests, their latency and the policies' decisions, counted on every admission call.

    Plain counts updated on the event loop (the only thread that answers calls), turned into
    metrics when scraped: prometheus_client's labelled children take a lock and several
    lookups per update, a visible share of a sub-millisecond request."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.decisions: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        # per endpoint: a count per bucket (the last one is +Inf), and the sum of seconds
        self.latency: dict[str, tuple[list[int], list[float]]] = {}

    def record(self, endpoint: str, code: int, seconds: float, outcome: Outcome | None) -> None:
        self.requests[endpoint, str(code)] += 1
        latency = self.latency.get(endpoint)
        if latency is None:
            latency = self.latency[endpoint] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
        latency[0][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        latency[1][0] += seconds
        if outcome is not None:
            for verdict in outcome.verdicts:
                self.decisions[verdict.policy, verdict.decision, verdict.mode.value] += 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "stateful_guard_admission_requests",
            "Admission calls by endpoint and HTTP status.",
            labels=["endpoint", "code"],
        )
        for (endpoint, code), count in list(self.requests.items()):
            requests.add_metric([endpoint, code], count)
        decisions = CounterMetricFamily(
            "stateful_guard_policy_decisions",
            "Policy decisions by policy, decision (allow, deny, patch, warn, audit, error, skip, "
            "excepted: let past by a GuardException) and mode.",
            labels=["policy", "decision", "mode"],
        )
        for key, count in list(self.decisions.items()):
            decisions.add_metric(list(key), count)
        latency = HistogramMetricFamily(
            "stateful_guard_admission_duration_seconds",
            "Time to answer an admission call, by endpoint.",
            labels=["endpoint"],
        )
        for endpoint, (counts, total) in list(self.latency.items()):
            buckets = list(zip(_BOUNDS, accumulate(counts), strict=True))
            latency.add_metric([endpoint], buckets, total[0])
        yield from (requests, decisions, latency)


class _Reloads(Collector):
    def __init__(self) -> None:
        self.count: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(
            "stateful_guard_certificate_reloads",
            "Times the serving certificate was reloaded from disk.",
        )
        counter.add_metric([], self.count())
        yield counter


class _ViewCollector(Collector):
    def __init__(self, view: LiveView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        objects = GaugeMetricFamily(
            "stateful_guard_cache_objects", "Objects in the cluster view, by kind.", labels=["kind"]
        )
        age = GaugeMetricFamily(
            "stateful_guard_cache_age_seconds",
            "Seconds since the cluster view last heard from the API "
            "server (list, watch event or bookmark), by kind.",
            labels=["kind"],
        )
        relists = CounterMetricFamily(
            "stateful_guard_cache_relists",
            "Times a kind was listed again after an expired or broken watch.",
            labels=["kind"],
        )
        for kind, stats in self.view.stats().items():
            objects.add_metric([kind], stats["objects"])
            age.add_metric([kind], stats["age_seconds"])
            relists.add_metric([kind], stats["relists"])
        yield from (objects, age, relists)
