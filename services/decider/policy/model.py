"""The policy file format: a Kubernetes ``autoscaling/v2`` HorizontalPodAutoscaler, plus scalebus extensions.

Field names and meanings are the HPA's (camelCase on disk, snake_case here).  A real HPA manifest is
accepted unchanged (``status`` and the usual ``metadata`` bookkeeping are tolerated and ignored).  The
scalebus extensions (``paused``, ``rules``, ``scaleToZero``, ``panic``, ``fallback``) are optional
fields of ``spec``; see ``docs/policy.md``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from shared.config import Config

Quantity = str | int | float
"""A Kubernetes quantity: ``500m``, ``1.5Gi``, ``2``, ``0.1``."""

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


class _Camel(Config, frozen=True, kw_only=True, rename="camel"):
    """A policy section: camelCase keys on disk, unknown keys rejected."""


class ObjectMeta(_Camel, frozen=True, kw_only=True):
    """Kubernetes object metadata; only ``name`` and ``namespace`` matter to scalebus."""

    name: Annotated[str, msgspec.Meta(min_length=1)]
    namespace: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    generate_name: str = ""
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    self_link: str = ""
    managed_fields: list[Any] = msgspec.field(default_factory=list)
    owner_references: list[Any] = msgspec.field(default_factory=list)
    finalizers: list[str] = msgspec.field(default_factory=list)


class CrossVersionObjectReference(_Camel, frozen=True, kw_only=True):
    kind: str = ""
    name: Annotated[str, msgspec.Meta(min_length=1)]
    api_version: str = ""


class LabelSelectorRequirement(_Camel, frozen=True, kw_only=True):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = msgspec.field(default_factory=list)


class LabelSelector(_Camel, frozen=True, kw_only=True):
    match_labels: dict[str, str] = msgspec.field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = msgspec.field(default_factory=list)


class MetricIdentifier(_Camel, frozen=True, kw_only=True):
    """Names a scalebus metric (the ``name`` of samples in a MetricSnapshot)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")]
    selector: LabelSelector | None = None


class MetricTarget(_Camel, frozen=True, kw_only=True):
    type: Literal["Utilization", "Value", "AverageValue"]
    value: Quantity | None = None
    average_value: Quantity | None = None
    average_utilization: PositiveInt | None = None


class ResourceMetricSource(_Camel, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]
    target: MetricTarget


class ContainerResourceMetricSource(_Camel, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]
    container: Annotated[str, msgspec.Meta(min_length=1)]
    target: MetricTarget


class PodsMetricSource(_Camel, frozen=True, kw_only=True):
    metric: MetricIdentifier
    target: MetricTarget


class ObjectMetricSource(_Camel, frozen=True, kw_only=True):
    described_object: CrossVersionObjectReference
    metric: MetricIdentifier
    target: MetricTarget


class ExternalMetricSource(_Camel, frozen=True, kw_only=True):
    metric: MetricIdentifier
    target: MetricTarget


class MetricSpec(_Camel, frozen=True, kw_only=True):
    type: Literal["Resource", "Pods", "Object", "External", "ContainerResource"]
    resource: ResourceMetricSource | None = None
    pods: PodsMetricSource | None = None
    object: ObjectMetricSource | None = None
    external: ExternalMetricSource | None = None
    container_resource: ContainerResourceMetricSource | None = None


class HPAScalingPolicy(_Camel, frozen=True, kw_only=True):
    type: Literal["Pods", "Percent"]
    value: PositiveInt
    period_seconds: Annotated[int, msgspec.Meta(ge=1, le=1800)]


class HPAScalingRules(_Camel, frozen=True, kw_only=True):
    stabilization_window_seconds: Annotated[int, msgspec.Meta(ge=0, le=3600)] | None = None
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[HPAScalingPolicy] | None = None
    tolerance: Quantity | None = None
    """Per-direction tolerance (Kubernetes >= 1.33); the controller default (0.1) when unset."""


class HorizontalPodAutoscalerBehavior(_Camel, frozen=True, kw_only=True):
    scale_up: HPAScalingRules | None = None
    scale_down: HPAScalingRules | None = None


# -- scalebus extensions -----------------------------------------------------------------------

Aggregate = Literal["avg", "sum", "max", "min", "last"]
Comparison = Literal[">", ">=", "<", "<=", "==", "!="]


class Condition(_Camel, frozen=True, kw_only=True):
    """``<aggregate>(metric) <op> value``, optionally held for ``forSeconds`` before it counts as true."""

    metric: Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")]
    op: Comparison
    value: float
    aggregate: Aggregate = "avg"
    for_seconds: NonNegativeFloat = 0.0
    selector: LabelSelector | None = None


class ConditionGroup(_Camel, frozen=True, kw_only=True):
    """``all`` conditions must hold, or ``any`` of them (exactly one of the two)."""

    all: list[Condition] | None = None
    any: list[Condition] | None = None


class RuleAction(_Camel, frozen=True, kw_only=True):
    """Exactly one of: add N replicas, remove N, multiply by a factor (rounded up), set to N."""

    add: PositiveInt | None = None
    remove: PositiveInt | None = None
    multiply: Annotated[float, msgspec.Meta(gt=0)] | None = None
    set: NonNegativeInt | None = None


class Rule(_Camel, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z0-9_.-]{1,63}$")]
    when: ConditionGroup
    action: RuleAction
    priority: int = 0
    recheck_after_seconds: NonNegativeFloat = 0.0
    """After the rule fires it is not evaluated again for this long (the re-check delay)."""


class ActivationTrigger(_Camel, frozen=True, kw_only=True):
    metric: Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")]
    threshold: NonNegativeFloat = 0.0
    """The target is active while ``aggregate(metric) > threshold`` (KEDA ``activationThreshold``)."""
    aggregate: Aggregate = "sum"


class ScaleToZero(_Camel, frozen=True, kw_only=True):
    """KEDA semantics: inactive for ``cooldownPeriodSeconds`` -> ``idleReplicaCount`` (default 0)."""

    triggers: Annotated[list[ActivationTrigger], msgspec.Meta(min_length=1)]
    cooldown_period_seconds: NonNegativeFloat = 300.0
    idle_replica_count: NonNegativeInt = 0


class PanicMode(_Camel, frozen=True, kw_only=True):
    """Knative KPA semantics over one metric whose per-replica target is ``targetPerReplica``."""

    metric: Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")]
    target_per_replica: Annotated[float, msgspec.Meta(gt=0)]
    aggregate: Literal["sum", "avg"] = "sum"
    """How a snapshot's samples become the observed total (sum over pods, or the average times ready pods)."""
    stable_window_seconds: Annotated[float, msgspec.Meta(ge=6, le=3600)] = 60.0
    panic_window_percentage: Annotated[float, msgspec.Meta(ge=1, le=100)] = 10.0
    panic_threshold_percentage: Annotated[float, msgspec.Meta(ge=110, le=1000)] = 200.0
    max_scale_up_rate: Annotated[float, msgspec.Meta(gt=1)] = 1000.0
    max_scale_down_rate: Annotated[float, msgspec.Meta(gt=1)] = 2.0
    scale_down_delay_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0
    """Knative ``scale-down-delay``: the decision is the highest of this trailing window."""


class Fallback(_Camel, frozen=True, kw_only=True):
    """KEDA semantics: after ``failureThreshold`` consecutive failed evaluations, serve ``replicas``."""

    failure_threshold: PositiveInt = 3
    replicas: NonNegativeInt
    behavior: Literal["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"] = "static"


class HorizontalPodAutoscalerSpec(_Camel, frozen=True, kw_only=True):
    scale_target_ref: CrossVersionObjectReference
    max_replicas: PositiveInt
    min_replicas: NonNegativeInt | None = None
    metrics: list[MetricSpec] = msgspec.field(default_factory=list)
    behavior: HorizontalPodAutoscalerBehavior | None = None
    # scalebus extensions
    paused: bool = False
    paused_replicas: NonNegativeInt | None = None
    """With ``paused``: hold the target at this size instead of its current one (KEDA ``paused-replicas``)."""
    rules: list[Rule] = msgspec.field(default_factory=list)
    scale_to_zero: ScaleToZero | None = None
    panic: PanicMode | None = None
    fallback: Fallback | None = None


class PolicyDocument(_Camel, frozen=True, kw_only=True):
    """One policy document: ``autoscaling/v2`` HorizontalPodAutoscaler or ``scalebus.dev/v1`` ScalingPolicy."""

    api_version: Literal["autoscaling/v2", "autoscaling/v2beta2", "scalebus.dev/v1"]
    kind: Literal["HorizontalPodAutoscaler", "ScalingPolicy"]
    metadata: ObjectMeta
    spec: HorizontalPodAutoscalerSpec
    status: dict[str, Any] | None = None
    """Present in manifests exported from a cluster; ignored."""
