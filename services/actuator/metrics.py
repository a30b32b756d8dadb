"""Every metric of the actuator, built in one place with a registry and a prefix."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class ActuatorMetrics:
    """Actuations, backend calls, queue depth, breakers and per-endpoint call counters.

    The per-endpoint counters follow the registry notification endpoints' shape: pending,
    events, successes, failures (the endpoint answered with an error), errors (it did not
    answer: timeout, connection) and the status codes it answered with.
    """

    def __init__(self, registry: CollectorRegistry, prefix: str = "scalebus") -> None:
        self.actuations = Counter(
            f"{prefix}_actuations",
            "Decisions handled, by target, action (scale_up, scale_down, none) and status (applied, skipped, failed)",
            ["target", "action", "status"],
            registry=registry,
        )
        self.skips = Counter(
            f"{prefix}_actuator_skips",
            "Decisions skipped, by target and reason code",
            ["target", "code"],
            registry=registry,
        )
        self.backend_call_seconds = Histogram(
            f"{prefix}_actuator_backend_call_seconds",
            "Latency of backend calls",
            ["backend", "operation", "outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.backend_retries = Counter(
            f"{prefix}_actuator_backend_retries",
            "Backend calls retried after a transient error",
            ["backend"],
            registry=registry,
        )
        self.pending = Gauge(
            f"{prefix}_actuator_pending_decisions", "Decisions received and not yet handled", registry=registry
        )
        self.in_flight = Gauge(
            f"{prefix}_actuator_in_flight_actuations", "Actuations being executed right now", registry=registry
        )
        self.breaker_state = Gauge(
            f"{prefix}_actuator_breaker_state",
            "Circuit breaker state per target: 0 closed, 1 half-open, 2 open",
            ["target"],
            registry=registry,
        )
        self.breaker_opened = Counter(
            f"{prefix}_actuator_breaker_opened",
            "Times a target's circuit breaker opened",
            ["target"],
            registry=registry,
        )
        self.alerts = Counter(f"{prefix}_actuator_alerts", "Alerts published", ["code"], registry=registry)
        self.lease_busy = Counter(
            f"{prefix}_actuator_lease_busy",
            "Decisions put back because another instance holds the target's lease",
            ["target"],
            registry=registry,
        )
        self.status_published = Counter(
            f"{prefix}_actuator_status_published", "TargetStatus messages published", ["target"], registry=registry
        )
        self.replicas = Gauge(
            f"{prefix}_actuator_replicas",
            "Replicas per target by kind (spec, current, ready)",
            ["target", "kind"],
            registry=registry,
        )
        self.endpoint_pending = Gauge(
            f"{prefix}_actuator_endpoint_pending",
            "Backend calls under way per endpoint",
            ["endpoint"],
            registry=registry,
        )
        self.endpoint_events = Counter(
            f"{prefix}_actuator_endpoint_events", "Backend calls made per endpoint", ["endpoint"], registry=registry
        )
        self.endpoint_successes = Counter(
            f"{prefix}_actuator_endpoint_successes", "Backend calls that succeeded", ["endpoint"], registry=registry
        )
        self.endpoint_failures = Counter(
            f"{prefix}_actuator_endpoint_failures",
            "Backend calls the endpoint answered with an error",
            ["endpoint"],
            registry=registry,
        )
        self.endpoint_errors = Counter(
            f"{prefix}_actuator_endpoint_errors",
            "Backend calls that got no answer (timeout, connection error)",
            ["endpoint"],
            registry=registry,
        )
        self.endpoint_status_codes = Counter(
            f"{prefix}_actuator_endpoint_status_codes",
            "HTTP status codes answered by an endpoint",
            ["endpoint", "code"],
            registry=registry,
        )

    def set_breaker_state(self, target: str, state: str) -> None:
        self.breaker_state.labels(target).set(BREAKER_STATE_VALUES[state])
