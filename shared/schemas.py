"""Wire messages exchanged over NATS.

Every message is a frozen, keyword-only msgspec Struct carrying a ``kind`` tag and a
``version`` field.  JSON is the wire encoding.  Unknown fields are tolerated on decode
(a newer producer may add fields); a breaking change bumps ``version``.

The JSON Schemas in ``docs/schemas/`` are generated from these classes (``make schemas``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1

TargetName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?(/[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?)?$",
        description="A scaling target: `name` or `namespace/name`, lowercase DNS-label characters.",
    ),
]
MetricName = Annotated[
    str,
    msgspec.Meta(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$", description="A Prometheus-style metric name."),
]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
Quality = Literal["ok", "stale", "error"]


class _Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Base of every wire message: a ``kind`` tag and a schema ``version``."""

    version: int = SCHEMA_VERSION


class MetricSample(msgspec.Struct, frozen=True, kw_only=True):
    """One observation of one metric, with the quality of the source that produced it."""

    name: MetricName
    value: float
    timestamp: float = msgspec.field(default=0.0)
    unit: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    source: str = ""
    quality: Quality = "ok"
    error: str = ""


class MetricSnapshot(_Message, frozen=True, kw_only=True, tag="metric_snapshot"):
    """Everything the collector knows about one target's load at one moment."""

    target: TargetName
    collected_at: float
    samples: tuple[MetricSample, ...] = ()
    collector: str = ""
    sequence: NonNegativeInt = 0
    urgent: bool = False
    """True when the snapshot was forwarded early because a sample crossed a threshold."""


class MetricPush(_Message, frozen=True, kw_only=True, tag="metric_push"):
    """A custom metric that an application publishes to the bus (any NATS client, any language)."""

    target: TargetName
    name: MetricName
    value: float
    timestamp: float = 0.0
    unit: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class ReplicaStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One running replica (a local process or a pod) as the actuator sees it."""

    name: str
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Terminating"] = "Running"
    ready: bool = False
    started_at: float = 0.0
    ready_changed_at: float = 0.0
    endpoint: str = ""
    """Base URL of the replica's HTTP endpoint (``http://127.0.0.1:PORT``), when it has one."""
    pid: int = 0


class TargetStatus(_Message, frozen=True, kw_only=True, tag="target_status"):
    """Current state of a target, published by the actuator on change and periodically."""

    target: TargetName
    backend: str
    spec_replicas: NonNegativeInt
    current_replicas: NonNegativeInt
    ready_replicas: NonNegativeInt
    observed_at: float
    replicas: tuple[ReplicaStatus, ...] = ()
    paused: bool = False
    breaker: Literal["closed", "open", "half_open"] = "closed"


class MetricInput(msgspec.Struct, frozen=True, kw_only=True):
    """One input a decision was based on."""

    metric: str
    value: float
    target: float = 0.0
    age_seconds: float = 0.0
    proposal: int | None = None
    """Replicas this metric alone would ask for (None when it was invalid)."""
    note: str = ""


class Adjustment(msgspec.Struct, frozen=True, kw_only=True):
    """A step of normalization that changed the recommendation (stabilization, rate limit, bounds, ...)."""

    stage: str
    before: int
    after: int
    reason: str


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    """Why a decision came out as it did."""

    policy: str
    inputs: tuple[MetricInput, ...] = ()
    winner: str = ""
    """The metric or rule whose proposal won."""
    raw_recommendation: int = 0
    adjustments: tuple[Adjustment, ...] = ()
    conditions: dict[str, str] = msgspec.field(default_factory=dict)
    """HPA-style condition types (AbleToScale, ScalingActive, ScalingLimited) to their reason."""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The decider's verdict for one target in one tick."""

    id: str
    target: TargetName
    current_replicas: NonNegativeInt
    desired_replicas: NonNegativeInt
    reason: str
    """Reason code, HPA vocabulary where it applies (ScaleUpLimit, DesiredWithinRange, ...)."""
    message: str = ""
    decided_at: float
    min_replicas: NonNegativeInt = 0
    max_replicas: NonNegativeInt = 0
    explanation: Explanation | None = None


class DecisionBatch(_Message, frozen=True, kw_only=True, tag="decision_batch"):
    """One decider tick: the decisions for every target whose desired state changed."""

    batch_id: str
    decider: str
    tick: NonNegativeInt
    decided_at: float
    decisions: tuple[Decision, ...] = ()


ExecutionStatus = Literal["applied", "skipped", "failed"]


class ExecutionResult(_Message, frozen=True, kw_only=True, tag="execution_result"):
    """What the actuator did with one decision."""

    decision_id: str
    target: str
    status: ExecutionStatus
    reason: str = ""
    error: str = ""
    previous_replicas: int | None = None
    requested_replicas: int | None = None
    resulting_replicas: int | None = None
    dry_run: bool = False
    duration_seconds: float = 0.0
    executed_at: float
    actuator: str = ""


class Alert(_Message, frozen=True, kw_only=True, tag="alert"):
    """An operator-facing event (circuit breaker opened, policy reload failed, ...)."""

    service: str
    target: str = ""
    severity: Literal["info", "warning", "critical"] = "warning"
    code: str
    message: str
    raised_at: float


class DeadLetter(_Message, frozen=True, kw_only=True, tag="dead_letter"):
    """A message that could not be processed, kept with the reason so nothing is lost."""

    service: str
    subject: str
    reason: str
    payload: str
    """The original payload, decoded as UTF-8 with invalid bytes escaped."""
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    received_at: float


class DeciderControl(_Message, frozen=True, kw_only=True, tag="decider_control"):
    """Pause or resume a target at run time; any NATS client may send it to the decider.

    ``{"kind": "decider_control", "action": "pause", "target": "web", "replicas": 3}``
    """

    action: Literal["pause", "resume"]
    target: TargetName
    reason: str = ""
    replicas: NonNegativeInt | None = None
    """With ``pause``: hold the target at this size (KEDA ``paused-replicas``)."""


WIRE_MESSAGES: tuple[type[msgspec.Struct], ...] = (
    MetricPush,
    MetricSnapshot,
    TargetStatus,
    DecisionBatch,
    ExecutionResult,
    Alert,
    DeadLetter,
    DeciderControl,
)
