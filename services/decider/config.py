"""The decider's configuration file (``deploy/local/decider.yaml``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from services.decider.engine.spec import ControllerSettings
from services.decider.policy.model import PolicyDocument
from shared.config import Config, ServiceConfig


class HpaControllerConfig(Config, frozen=True, kw_only=True):
    """The HPA controller's global flags, used where a policy does not set its own value."""

    tolerance: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1
    cpu_initialization_period_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    initial_readiness_delay_seconds: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    downscale_stabilization_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    metric_window_seconds: Annotated[float, msgspec.Meta(ge=0)] = 30.0

    def settings(self) -> ControllerSettings:
        return ControllerSettings(
            tolerance=self.tolerance,
            cpu_initialization_period_seconds=self.cpu_initialization_period_seconds,
            initial_readiness_delay_seconds=self.initial_readiness_delay_seconds,
            downscale_stabilization_seconds=self.downscale_stabilization_seconds,
            metric_window_seconds=self.metric_window_seconds,
        )


class DeciderConfig(Config, frozen=True, kw_only=True):
    """Settings of the decider service."""

    service: ServiceConfig = msgspec.field(default_factory=ServiceConfig)
    policies_dir: str = "policies"
    """Directory of policy files; relative paths resolve against this config file's directory."""
    tick_interval_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 1.0
    reload_interval_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 2.0
    """How often the policies directory is checked for changes."""
    snapshot_max_age_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Older snapshots are not used (the target's metrics count as missing)."""
    status_max_age_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """A target without a TargetStatus this recent is not evaluated."""
    pending_decision_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """After a decision, its desired replicas count as current until the status shows it or this passes."""
    persist_state: bool = True
    """Keep recommendation history and scale events in a JetStream KV bucket across restarts."""
    hpa: HpaControllerConfig = msgspec.field(default_factory=HpaControllerConfig)


CONFIG_SCHEMA_TYPES: tuple[type, ...] = (DeciderConfig, PolicyDocument)
