"""Prometheus metrics, on a registry of their own (one per app, so tests stay independent)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webhook.engine import Outcome
from webhook.live import LiveView

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stateful_guard_admission_requests",
            "Admission calls by endpoint and HTTP status.",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "stateful_guard_policy_decisions",
            "Policy decisions by policy, decision (allow, deny, patch, warn, audit, error) "
            "and mode.",
            ["policy", "decision", "mode"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stateful_guard_admission_duration_seconds",
            "Time to answer an admission call, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.side_effects = Counter(
            "stateful_guard_side_effects",
            "Side effects (managed headless Services) by policy and result "
            "(created, exists, failed, skipped).",
            ["policy", "result"],
            registry=self.registry,
        )
        self.cert_reloads = Gauge(
            "stateful_guard_certificate_reloads",
            "Times the serving certificate was reloaded from disk.",
            registry=self.registry,
        )

    def watch_view(self, view: LiveView) -> None:
        """Export the live view's cache: objects, age since the last event, relists."""
        self.registry.register(_ViewCollector(view))

    def record(self, endpoint: str, code: int, seconds: float, outcome: Outcome | None) -> None:
        self.requests.labels(endpoint, str(code)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if outcome is not None:
            for verdict in outcome.verdicts:
                self.decisions.labels(verdict.policy, verdict.decision, verdict.mode.value).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


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
