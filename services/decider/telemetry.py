"""The decider's Prometheus metrics, all in one class."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DeciderMetrics:
    def __init__(self, registry: CollectorRegistry, prefix: str = "scalebus_decider") -> None:
        self.ticks = Counter(f"{prefix}_ticks", "Decision ticks run", ["trigger"], registry=registry)
        self.evaluations = Counter(f"{prefix}_evaluations", "Target evaluations", registry=registry)
        self.decisions = Counter(f"{prefix}_decisions", "Decisions published, by reason", ["reason"], registry=registry)
        self.batches = Counter(f"{prefix}_batches", "Decision batches published", registry=registry)
        self.tick_seconds = Histogram(
            f"{prefix}_tick_seconds",
            "Time to evaluate all targets of a tick",
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=registry,
        )
        self.policies = Gauge(f"{prefix}_policies", "Policies in force", registry=registry)
        self.policy_reloads = Counter(
            f"{prefix}_policy_reloads", "Policy directory reloads that changed something", registry=registry
        )
        self.policy_reload_failures = Counter(
            f"{prefix}_policy_reload_failures",
            "Policy files rejected on reload (the last good policy stays in force)",
            registry=registry,
        )
        self.invalid_policy_files = Gauge(
            f"{prefix}_invalid_policy_files", "Policy files whose newest version is invalid", registry=registry
        )
        self.desired_replicas = Gauge(
            f"{prefix}_desired_replicas", "Last desired replicas per target", ["target"], registry=registry
        )
        self.state_save_failures = Counter(
            f"{prefix}_state_save_failures", "Failed writes of engine state to the KV bucket", registry=registry
        )
        self.paused_targets = Gauge(f"{prefix}_paused_targets", "Targets paused by control", registry=registry)
