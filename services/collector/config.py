"""The collector's configuration: targets, and per target the sources that measure its load.

Every source has its own interval, timeout and retry; a target may also name thresholds whose
crossing forwards a snapshot at once.  Loaded from YAML by :func:`shared.config.load_config`;
unknown fields are rejected and errors name the file, field and reason.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import msgspec

from shared.config import Config, ServiceConfig
from shared.quantity import QuantityError, parse_quantity
from shared.schemas import MetricName, TargetName

PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeSeconds = Annotated[float, msgspec.Meta(ge=0)]
SourceName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,100}$")]


class RetryConfig(Config, frozen=True, kw_only=True):
    """How often a failed collection is tried again within one interval."""

    attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1
    """Total attempts per interval (1 = no retry)."""
    backoff_seconds: NonNegativeSeconds = 0.1
    """Pause before each retry; doubles after every failed attempt."""


class _SourceConfig(Config, frozen=True, kw_only=True, tag_field="type"):
    """Settings every source shares."""

    name: SourceName
    interval_seconds: PositiveSeconds = 1.0
    timeout_seconds: PositiveSeconds = 0.8
    """Bound of one collection attempt; a slower attempt is abandoned and reported as an error."""
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    max_stale_seconds: NonNegativeSeconds = 10.0
    """After a failure, the last good value is reported as `stale` for this long, then as `error`."""


# -- scrape ---------------------------------------------------------------------------------


class ScrapeMetric(Config, frozen=True, kw_only=True):
    """One exposed sample name to keep, and how to turn it into a scalebus sample."""

    match: MetricName
    """The exposed sample name (`demo_requests_total`, `http_inflight`)."""
    as_: MetricName | None = msgspec.field(default=None, name="as")
    """Name of the emitted sample; defaults to `match`."""
    kind: Literal["rate", "gauge"] = "gauge"
    """`rate`: a counter turned into a per-second rate per replica; `gauge`: the value as exposed."""
    rate_window_seconds: NonNegativeSeconds = 0.0
    """Rate over this trailing window (0 = between the last two scrapes)."""
    unit: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    """Only exposed samples carrying all these label values are kept."""

    @property
    def output_name(self) -> str:
        return self.as_ or self.match


class StaticEndpoint(Config, frozen=True, kw_only=True):
    """A fixed /metrics URL and the pod name its samples carry."""

    url: str
    pod: str = ""
    """Value of the `pod` label (omitted when empty)."""


class ScrapeSourceConfig(_SourceConfig, frozen=True, kw_only=True, tag="scrape"):
    """Scrape Prometheus-text endpoints directly: static URLs and/or the target's replicas."""

    discover: bool = False
    """Scrape every running replica of the target that has an endpoint (from TargetStatus)."""
    path: str = "/metrics"
    """Path appended to a discovered replica endpoint."""
    endpoints: tuple[StaticEndpoint, ...] = ()
    metrics: tuple[ScrapeMetric, ...]
    request_timeout_seconds: PositiveSeconds | None = None
    """Bound of one endpoint's request (default: 80 % of timeout_seconds), so one slow replica
    becomes a per-pod error instead of failing the whole source."""

    def __post_init__(self) -> None:
        if not self.discover and not self.endpoints:
            raise ValueError("a scrape source needs `discover: true` or at least one of `endpoints`")
        if not self.metrics:
            raise ValueError("a scrape source needs at least one entry in `metrics`")


# -- Prometheus -----------------------------------------------------------------------------


class PromQuery(Config, frozen=True, kw_only=True):
    """One PromQL instant query; each series of the result becomes a sample."""

    query: str
    as_: MetricName = msgspec.field(name="as")
    unit: str = ""
    labels: tuple[str, ...] | None = None
    """Result labels to keep (default: all but `__name__`)."""
    pod_label: str = ""
    """A result label whose value becomes the `pod` label (`pod`, `instance`, ...)."""
    empty_as: float | None = None
    """Value reported when the query returns no series (default: a per-sample error)."""


class PrometheusSourceConfig(_SourceConfig, frozen=True, kw_only=True, tag="prometheus"):
    """Instant queries against a Prometheus HTTP API (`/api/v1/query`)."""

    url: str
    """Base URL of the Prometheus server (`http://127.0.0.1:9090`)."""
    queries: tuple[PromQuery, ...]

    def __post_init__(self) -> None:
        if not self.queries:
            raise ValueError("a prometheus source needs at least one entry in `queries`")


# -- local processes ------------------------------------------------------------------------


class ProcessSourceConfig(_SourceConfig, frozen=True, kw_only=True, tag="process"):
    """CPU (cores) and memory (bytes, RSS) of the target's local replica processes (pids from TargetStatus)."""

    include_children: bool = True
    cpu_name: MetricName = "cpu"
    memory_name: MetricName = "memory"
    cpu_request: float | str | None = None
    """What each replica is meant to use, in cores or as a quantity (`250m`): reported per pod as
    `<cpu_name>_request`, so `Resource` policies with `Utilization` targets work on local replicas
    (local processes have no requests of their own)."""
    memory_request: float | str | None = None
    """Likewise in bytes or as a quantity (`256Mi`): reported per pod as `<memory_name>_request`."""

    def __post_init__(self) -> None:
        for field, value in (("cpu_request", self.cpu_request), ("memory_request", self.memory_request)):
            if value is None:
                continue
            try:
                parsed = parse_quantity(value)
            except QuantityError as exc:
                raise ValueError(f"{field}: {exc}") from exc
            if not parsed > 0 or not math.isfinite(parsed):
                raise ValueError(f"{field} must be a positive quantity, not {value!r}")

    @property
    def requests(self) -> dict[str, float]:
        """Sample name -> per-replica request (cores or bytes), for the configured requests."""
        found: dict[str, float] = {}
        if self.cpu_request is not None:
            found[f"{self.cpu_name}_request"] = parse_quantity(self.cpu_request)
        if self.memory_request is not None:
            found[f"{self.memory_name}_request"] = parse_quantity(self.memory_request)
        return found


# -- JetStream ------------------------------------------------------------------------------


class JetStreamSourceConfig(_SourceConfig, frozen=True, kw_only=True, tag="jetstream"):
    """Backlog of a JetStream consumer: num_pending + num_ack_pending."""

    stream: str
    consumer: str
    as_: MetricName = msgspec.field(default="jetstream_consumer_backlog", name="as")
    url: str = ""
    """NATS server of the stream (default: the collector's own bus)."""


# -- Kafka ----------------------------------------------------------------------------------


class KafkaSourceConfig(_SourceConfig, frozen=True, kw_only=True, tag="kafka"):
    """Consumer-group lag: end offsets minus committed offsets, per partition, summed."""

    bootstrap_servers: str
    group: str
    topics: tuple[str, ...] = ()
    """Topics to count (default: every topic the group has committed offsets for)."""
    as_: MetricName = msgspec.field(default="kafka_consumer_lag", name="as")
    per_topic: bool = False
    """Also emit one sample per topic (label `topic`)."""
    uncommitted_lag: Literal["end", "zero"] = "end"
    """A partition without a committed offset lags by its end offset (`end`) or not at all (`zero`)."""


# -- Kubernetes -----------------------------------------------------------------------------


class KubernetesSourceConfig(_SourceConfig, frozen=True, kw_only=True, tag="kubernetes"):
    """Pod CPU and memory from the `metrics.k8s.io` API, with requests from the pods' specs."""

    namespace: str = "default"
    label_selector: str
    """Selects the target's pods (`app=web`)."""
    kubeconfig: str = ""
    """Path to a kubeconfig (`~` expands; relative paths resolve against the config file); empty: in-cluster."""
    context: str = ""
    include_requests: bool = True
    """Also emit `cpu_request` / `memory_request` per pod."""


SourceConfig = (
    ScrapeSourceConfig
    | PrometheusSourceConfig
    | ProcessSourceConfig
    | JetStreamSourceConfig
    | KafkaSourceConfig
    | KubernetesSourceConfig
)


# -- targets --------------------------------------------------------------------------------


class ThresholdConfig(Config, frozen=True, kw_only=True):
    """A sample of `metric` crossing `above` (upwards) or `below` (downwards) forwards a snapshot at once."""

    metric: MetricName
    above: float | None = None
    below: float | None = None

    def __post_init__(self) -> None:
        if self.above is None and self.below is None:
            raise ValueError("a threshold needs `above` or `below`")
        for value in (self.above, self.below):
            if value is not None and not math.isfinite(value):
                raise ValueError("threshold values must be finite numbers")


class TargetConfig(Config, frozen=True, kw_only=True):
    """One scaling target and the sources that measure it."""

    name: TargetName
    sources: tuple[SourceConfig, ...] = ()
    thresholds: tuple[ThresholdConfig, ...] = ()

    def __post_init__(self) -> None:
        names = [source.name for source in self.sources]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique within a target: {', '.join(duplicates)}")


class PushConfig(Config, frozen=True, kw_only=True):
    """Custom metrics that applications publish (MetricPush on `<prefix>.metrics.<target>`)."""

    enabled: bool = True
    flush_seconds: NonNegativeSeconds | None = 0.02
    """Forward pushed samples in a snapshot after this coalescing window; null: wait for the interval."""
    stale_after_seconds: PositiveSeconds = 30.0
    """A pushed sample not refreshed for this long is reported as `stale`."""
    expire_after_seconds: PositiveSeconds = 300.0
    """... and dropped after this long."""
    accept_unconfigured_targets: bool = True
    """Pushes for a target not in `targets` create a push-only target (else they are dead-lettered)."""
    max_series_per_target: Annotated[int, msgspec.Meta(ge=1)] = 10_000


class OwnershipConfig(Config, frozen=True, kw_only=True):
    """Sharing targets among collector instances through a NATS KV bucket of live members."""

    enabled: bool = True
    heartbeat_seconds: PositiveSeconds = 1.0
    member_ttl_seconds: PositiveSeconds = 4.0
    """A collector that has not heartbeated for this long is gone; its targets move to the others."""

    def __post_init__(self) -> None:
        if self.member_ttl_seconds <= self.heartbeat_seconds:
            raise ValueError("member_ttl_seconds must be longer than heartbeat_seconds")


class CollectorConfig(Config, frozen=True, kw_only=True):
    """The collector service."""

    service: ServiceConfig = msgspec.field(default_factory=ServiceConfig)
    snapshot_interval_seconds: PositiveSeconds = 1.0
    """One MetricSnapshot per owned target per interval."""
    targets: tuple[TargetConfig, ...] = ()
    push: PushConfig = msgspec.field(default_factory=PushConfig)
    ownership: OwnershipConfig = msgspec.field(default_factory=OwnershipConfig)

    def __post_init__(self) -> None:
        names = [target.name for target in self.targets]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"target names must be unique: {', '.join(duplicates)}")


CONFIG_SCHEMA_TYPES: tuple[type, ...] = (CollectorConfig,)
