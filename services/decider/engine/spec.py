"""A policy as the engine uses it: validated, defaulted and compiled into plain immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MetricKind = Literal[
    "resource_utilization",
    "resource_average_value",
    "pods_average_value",
    "object_value",
    "object_average_value",
    "external_value",
    "external_average_value",
]
SelectPolicy = Literal["Max", "Min", "Disabled"]
Aggregate = Literal["avg", "sum", "max", "min", "last"]
Comparison = Literal[">", ">=", "<", "<=", "==", "!="]


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Selector:
    """A Kubernetes label selector over sample labels."""

    match_labels: tuple[tuple[str, str], ...] = ()
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        for req in self.requirements:
            present = req.key in labels
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
        return True


@dataclass(frozen=True, slots=True)
class MetricRule:
    """One entry of ``spec.metrics``, ready to compute a replica proposal."""

    kind: MetricKind
    metric: str
    """Sample name the values come from (``cpu`` for Resource cpu)."""
    description: str
    """The HPA's name for the metric in messages (``pods metric qps``)."""
    target_milli: int = 0
    """Value/AverageValue target in milli-units (the HPA computes in milli-units)."""
    target_utilization: int = 0
    request_metric: str = ""
    """Per-pod request samples (``cpu_request``) for Utilization targets."""
    is_cpu: bool = False
    container: str = ""
    selector: Selector | None = None
    condition_reason: str = "FailedGetPodsMetric"


@dataclass(frozen=True, slots=True)
class RateLimit:
    kind: Literal["Pods", "Percent"]
    value: int
    period_seconds: int


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """One direction of ``behavior``, defaulted as the API server defaults it."""

    stabilization_window_seconds: int
    select_policy: SelectPolicy
    policies: tuple[RateLimit, ...]

    @property
    def longest_period(self) -> int:
        return max((p.period_seconds for p in self.policies), default=0)


@dataclass(frozen=True, slots=True)
class Behavior:
    scale_up: ScalingRules
    scale_down: ScalingRules


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Per-direction tolerance: a ratio within ``[1 - down, 1 + up]`` changes nothing."""

    up: float = 0.1
    down: float = 0.1

    def within(self, ratio: float) -> bool:
        """``|1 - ratio| <= tolerance`` of the ratio's direction (the HPA's own float comparison)."""
        return abs(1.0 - ratio) <= (self.up if ratio > 1.0 else self.down)


@dataclass(frozen=True, slots=True)
class ConditionSpec:
    metric: str
    op: Comparison
    value: float
    aggregate: Aggregate = "avg"
    for_seconds: float = 0.0
    selector: Selector | None = None

    @property
    def key(self) -> str:
        return f"{self.aggregate}({self.metric}){self.op}{self.value:g}"


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str
    mode: Literal["all", "any"]
    conditions: tuple[ConditionSpec, ...]
    action: Literal["add", "remove", "multiply", "set"]
    amount: float
    priority: int = 0
    recheck_after_seconds: float = 0.0

    def apply(self, current: int) -> int:
        if self.action == "add":
            return current + int(self.amount)
        if self.action == "remove":
            return max(0, current - int(self.amount))
        if self.action == "multiply":
            return _ceil(current * self.amount)
        return int(self.amount)

    @property
    def action_text(self) -> str:
        symbol = {"add": "+", "remove": "-", "multiply": "x", "set": "="}[self.action]
        return f"{symbol}{self.amount:g}"


@dataclass(frozen=True, slots=True)
class ActivationSpec:
    metric: str
    threshold: float
    aggregate: Aggregate = "sum"


@dataclass(frozen=True, slots=True)
class ScaleToZeroSpec:
    triggers: tuple[ActivationSpec, ...]
    cooldown_period_seconds: float = 300.0
    idle_replicas: int = 0


@dataclass(frozen=True, slots=True)
class PanicSpec:
    metric: str
    target_per_replica: float
    aggregate: Literal["sum", "avg"] = "sum"
    stable_window_seconds: float = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold_percentage: float = 200.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_down_delay_seconds: float = 0.0

    @property
    def panic_window_seconds(self) -> float:
        return self.stable_window_seconds * self.panic_window_percentage / 100.0


@dataclass(frozen=True, slots=True)
class FallbackSpec:
    failure_threshold: int
    replicas: int
    behavior: Literal["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"] = "static"


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """The HPA controller's flags (kube-controller-manager ``--horizontal-pod-autoscaler-*``)."""

    tolerance: float = 0.1
    cpu_initialization_period_seconds: float = 300.0
    initial_readiness_delay_seconds: float = 30.0
    downscale_stabilization_seconds: float = 300.0
    metric_window_seconds: float = 30.0
    """Width of the window a per-pod sample describes (metrics-server's window)."""


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Everything the engine needs to decide for one target."""

    name: str
    target: str
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricRule, ...] = ()
    behavior: Behavior | None = None
    """None: the HPA's legacy path (downscale stabilization, then at most max(2x, 4) up)."""
    tolerance: Tolerance = field(default_factory=Tolerance)
    paused: bool = False
    paused_replicas: int | None = None
    rules: tuple[RuleSpec, ...] = ()
    scale_to_zero: ScaleToZeroSpec | None = None
    panic: PanicSpec | None = None
    fallback: FallbackSpec | None = None
    source: str = ""
    """File the policy came from."""
    settings: ControllerSettings = field(default_factory=ControllerSettings)

    watched_metrics: frozenset[str] = frozenset()
    """Every metric name the policy reads (a failed sample of one of them counts toward fallback)."""


def _ceil(value: float) -> int:
    whole = int(value)
    return whole if whole == value or value < 0 else whole + 1
