"""The collector's own Prometheus metrics, in one class."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CollectorMetrics:
    """Counters and gauges of one collector process."""

    def __init__(self, registry: CollectorRegistry, prefix: str = "scalebus_collector") -> None:
        self.collections = Counter(
            f"{prefix}_collections",
            "Collection attempts by source and outcome",
            ["target", "source", "outcome"],
            registry=registry,
        )
        self.source_errors = Counter(
            f"{prefix}_source_errors",
            "Failed collections and per-sample errors by source",
            ["target", "source", "kind"],
            registry=registry,
        )
        self.collection_seconds = Histogram(
            f"{prefix}_collection_seconds",
            "Duration of one collection (all attempts)",
            ["source_type"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.snapshots = Counter(
            f"{prefix}_snapshots_published", "Snapshots published by trigger", ["trigger"], registry=registry
        )
        self.pushed_samples = Counter(f"{prefix}_pushed_samples", "Pushed samples ingested", registry=registry)
        self.pushes_ignored = Counter(
            f"{prefix}_pushes_ignored", "Pushed messages dropped, by reason", ["reason"], registry=registry
        )
        self.owned_targets = Gauge(f"{prefix}_owned_targets", "Targets this instance collects", registry=registry)
        self.members = Gauge(f"{prefix}_members", "Live collector instances seen", registry=registry)
