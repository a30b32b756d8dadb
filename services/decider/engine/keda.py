"""KEDA semantics: activation and scale to zero with a cooldown, and fallback replicas after failures."""

from __future__ import annotations

import msgspec

from services.decider.engine.aggregate import aggregate
from services.decider.engine.observation import Observation
from services.decider.engine.spec import FallbackSpec, ScaleToZeroSpec


class Activation(msgspec.Struct, frozen=True):
    active: bool
    values: tuple[tuple[str, float | None, float], ...]
    """(metric, observed value or None, threshold) per trigger."""


def check_activation(spec: ScaleToZeroSpec, observation: Observation) -> Activation:
    """Active while any trigger's value is above its activation threshold."""
    values: list[tuple[str, float | None, float]] = []
    active = False
    for trigger in spec.triggers:
        value = aggregate(observation, trigger.metric, trigger.aggregate)
        values.append((trigger.metric, value, trigger.threshold))
        if value is not None and value > trigger.threshold:
            active = True
    return Activation(active, tuple(values))


def fallback_replicas(spec: FallbackSpec, current: int) -> int:
    if spec.behavior == "currentReplicas":
        return current
    if spec.behavior == "currentReplicasIfHigher":
        return max(current, spec.replicas)
    if spec.behavior == "currentReplicasIfLower":
        return min(current, spec.replicas)
    return spec.replicas
