"""Configuration of the actuator: its targets (each with one backend), safety limits and dry-run.

Every section is a frozen, keyword-only Struct that rejects unknown fields; the YAML file is
validated into :class:`ActuatorConfig` by :func:`shared.config.load_config`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.config import Config, ConfigError, ServiceConfig
from shared.schemas import TargetName

PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeSeconds = Annotated[float, msgspec.Meta(ge=0)]
Replicas = Annotated[int, msgspec.Meta(ge=0)]
KubeName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")]


class LocalBackendConfig(Config, frozen=True, kw_only=True, tag="local", tag_field="type"):
    """Replicas are local OS processes, each running ``command`` in its own process group."""

    command: Annotated[list[str], msgspec.Meta(min_length=1)]
    """Argument vector; ``{python}`` becomes this interpreter, ``{port}`` a free 127.0.0.1 port, ``{name}`` the
    replica name."""
    env: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra environment for the replicas (the same placeholders apply)."""
    working_dir: str = ""
    """Directory the replicas run in; relative to the config file; empty = the actuator's directory."""
    health_path: str = "/healthz"
    """HTTP path polled on each replica; a 200 marks it ready.  Empty = ready once started."""
    health_interval_seconds: PositiveSeconds = 0.5
    health_timeout_seconds: PositiveSeconds = 1.0
    grace_seconds: PositiveSeconds = 5.0
    """How long a replica has to exit after SIGTERM before it is killed with SIGKILL."""
    initial_replicas: Replicas = 1
    restart_delay_seconds: PositiveSeconds = 0.5
    """First delay before restarting a crashed replica; doubles per consecutive crash."""
    max_restart_delay_seconds: PositiveSeconds = 10.0
    discard_output: bool = True
    """Send the replicas' stdout/stderr to /dev/null (True) or to the actuator's stderr (False)."""


class KubernetesBackendConfig(Config, frozen=True, kw_only=True, tag="kubernetes", tag_field="type"):
    """A Kubernetes object with a ``/scale`` subresource (Deployment, StatefulSet, or a custom resource)."""

    api_version: str = "apps/v1"
    kind: str = "Deployment"
    namespace: KubeName = "default"
    name: KubeName
    plural: str = ""
    """Resource plural of a custom resource; defaults to the lower-cased kind plus ``s``."""


BackendConfig = LocalBackendConfig | KubernetesBackendConfig


class TargetConfig(Config, frozen=True, kw_only=True):
    """One scaling target and how its replicas are changed."""

    name: TargetName
    backend: BackendConfig
    min_replicas: Replicas = 1
    max_replicas: Annotated[int, msgspec.Meta(ge=1)] = 10
    max_step: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Largest change of replicas in one actuation; None uses ``safety.max_step``."""
    min_change_interval_seconds: NonNegativeSeconds | None = None
    """At most one change per this many seconds; None uses ``safety.min_change_interval_seconds``."""


class RetryConfig(Config, frozen=True, kw_only=True):
    """Exponential backoff with full jitter for transient backend errors."""

    attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4
    base_delay_seconds: PositiveSeconds = 0.2
    max_delay_seconds: PositiveSeconds = 5.0


class BreakerConfig(Config, frozen=True, kw_only=True):
    """Per-target circuit breaker."""

    failure_threshold: Annotated[int, msgspec.Meta(ge=1)] = 3
    open_seconds: PositiveSeconds = 30.0
    """How long the target stays paused before one trial actuation is let through (half-open)."""


class LeaseConfig(Config, frozen=True, kw_only=True):
    """Per-target lease in a JetStream KV bucket: one actuator instance acts on a target at a time."""

    ttl_seconds: PositiveSeconds = 15.0
    """A lease not renewed for this long is free to take over (its holder is presumed dead)."""
    renew_interval_seconds: PositiveSeconds = 5.0


class SafetyConfig(Config, frozen=True, kw_only=True):
    """Limits that keep a wrong or repeated decision from doing harm."""

    max_decision_age_seconds: PositiveSeconds = 30.0
    """Decisions decided longer ago than this are skipped as stale."""
    max_step: Annotated[int, msgspec.Meta(ge=1)] = 4
    min_change_interval_seconds: NonNegativeSeconds = 2.0
    absurd_replicas: Annotated[int, msgspec.Meta(ge=1)] = 1000
    """A decision asking for more replicas than this is rejected outright (not clamped): it is a bug upstream."""
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    lease: LeaseConfig = msgspec.field(default_factory=LeaseConfig)


class KubernetesClientConfig(Config, frozen=True, kw_only=True):
    """How the Kubernetes backend reaches the API server."""

    kubeconfig: str = ""
    """Path of a kubeconfig file (relative to the config file); empty = in-cluster config when running in a
    pod, else ``$KUBECONFIG`` / ``~/.kube/config``."""
    context: str = ""
    in_cluster: bool = False
    request_timeout_seconds: PositiveSeconds = 5.0
    conflict_retries: Annotated[int, msgspec.Meta(ge=0, le=20)] = 5
    """How many times a 409 Conflict is answered by re-reading and writing again."""
    poll_interval_seconds: PositiveSeconds = 5.0
    """How often each target's scale is read to notice changes made by others."""
    list_pods: bool = True
    """Report the target's pods (found through the scale's label selector) in TargetStatus."""


class ConsumerConfig(Config, frozen=True, kw_only=True):
    """The durable JetStream consumer the actuator reads decision batches from."""

    durable: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$")] = "actuator"
    batch: Annotated[int, msgspec.Meta(ge=1, le=256)] = 16
    ack_wait_seconds: PositiveSeconds = 60.0
    max_deliver: Annotated[int, msgspec.Meta(ge=1)] = 20
    lease_busy_delay_seconds: PositiveSeconds = 2.0
    """Redelivery delay when another actuator instance holds the target's lease."""


class ActuatorConfig(Config, frozen=True, kw_only=True):
    """The actuator service."""

    service: ServiceConfig = msgspec.field(default_factory=ServiceConfig)
    targets: list[TargetConfig]
    dry_run: bool = False
    """Decide everything, change nothing: results say what would have been done."""
    status_interval_seconds: PositiveSeconds = 2.0
    """TargetStatus is published on every change and at least this often."""
    status_poll_seconds: PositiveSeconds = 0.25
    """How often backends are read to notice changes (crashes, readiness)."""
    consumer: ConsumerConfig = msgspec.field(default_factory=ConsumerConfig)
    safety: SafetyConfig = msgspec.field(default_factory=SafetyConfig)
    kubernetes: KubernetesClientConfig = msgspec.field(default_factory=KubernetesClientConfig)

    def target(self, name: str) -> TargetConfig | None:
        for target in self.targets:
            if target.name == name:
                return target
        return None


def validate_actuator_config(config: ActuatorConfig, *, file: str) -> None:
    """Checks across fields that a schema cannot express; raises ConfigError naming the field."""
    seen: set[str] = set()
    for index, target in enumerate(config.targets):
        where = f"targets[{index}]"
        if target.name in seen:
            raise ConfigError(file, f"{where}.name", f"duplicate target {target.name!r}")
        seen.add(target.name)
        if target.min_replicas > target.max_replicas:
            raise ConfigError(
                file,
                f"{where}.min_replicas",
                f"min_replicas {target.min_replicas} is above max_replicas {target.max_replicas}",
            )
        if target.max_replicas > config.safety.absurd_replicas:
            raise ConfigError(
                file,
                f"{where}.max_replicas",
                f"max_replicas {target.max_replicas} is above safety.absurd_replicas {config.safety.absurd_replicas}",
            )
        backend = target.backend
        if isinstance(backend, LocalBackendConfig):
            uses_port = any("{port}" in arg for arg in backend.command) or any(
                "{port}" in value for value in backend.env.values()
            )
            if backend.health_path and not uses_port:
                raise ConfigError(
                    file, f"{where}.backend.command", "health_path is set but no argument or env value uses {port}"
                )
            if backend.health_path and not backend.health_path.startswith("/"):
                raise ConfigError(file, f"{where}.backend.health_path", "must start with '/'")
            if not target.min_replicas <= backend.initial_replicas <= target.max_replicas:
                raise ConfigError(
                    file,
                    f"{where}.backend.initial_replicas",
                    f"{backend.initial_replicas} is outside [{target.min_replicas}, {target.max_replicas}]",
                )
        if isinstance(backend, KubernetesBackendConfig):
            builtin = backend.api_version == "apps/v1" and backend.kind in ("Deployment", "StatefulSet")
            if not builtin and "/" not in backend.api_version:
                raise ConfigError(
                    file,
                    f"{where}.backend.api_version",
                    f"{backend.api_version!r} has no API group: only apps/v1 Deployments and StatefulSets "
                    "and resources of a named group (group/version) have a /scale this backend can use",
                )
    if config.safety.lease.renew_interval_seconds >= config.safety.lease.ttl_seconds:
        raise ConfigError(file, "safety.lease.renew_interval_seconds", "must be shorter than safety.lease.ttl_seconds")


CONFIG_SCHEMA_TYPES: tuple[type, ...] = (ActuatorConfig,)
