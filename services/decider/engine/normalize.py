"""The HPA's normalization: stabilization over recommendation history, scale-rate limits, min/max.

Two paths, as in kubernetes v1.28 ``horizontal.go``: without ``behavior`` (stabilize scale-down over the
controller's window, then cap a scale-up at max(2 x current, 4)), and with ``behavior`` (per-direction
stabilization windows, then Pods/Percent policies over recorded scale events).  Time comes in as ``now``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import msgspec

from services.decider.engine.spec import Behavior, ScalingRules

SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0


@dataclass(slots=True)
class Recommendation:
    replicas: int
    at: float


@dataclass(slots=True)
class ScaleEvent:
    change: int
    at: float
    outdated: bool = False


@dataclass(slots=True)
class HpaState:
    """The HPA controller's per-target memory: recommendations and scale events."""

    recommendations: list[Recommendation] = field(default_factory=list)
    scale_up_events: list[ScaleEvent] = field(default_factory=list)
    scale_down_events: list[ScaleEvent] = field(default_factory=list)
    initialized: bool = False
    """False until the first evaluation recorded the current replicas as a recommendation."""


class Normalized(msgspec.Struct, frozen=True):
    replicas: int
    stabilized: int
    able_to_scale: str
    """ReadyForNewScale, ScaleUpStabilized or ScaleDownStabilized."""
    limited: str
    """DesiredWithinRange, ScaleUpLimit, ScaleDownLimit, TooManyReplicas or TooFewReplicas."""
    message: str


def record_initial_recommendation(state: HpaState, current: int, now: float) -> None:
    """The HPA seeds a new target's history with its current size (so a restart never scales down at once)."""
    if not state.initialized:
        state.initialized = True
        if not state.recommendations:
            state.recommendations.append(Recommendation(current, now))


# -- without behavior -----------------------------------------------------------------------------


def stabilize_recommendation(state: HpaState, desired: int, now: float, window: float) -> int:
    """Max of the recommendations not older than the downscale window; records ``desired``."""
    highest = desired
    old_index = -1
    cutoff = now - window
    for index, rec in enumerate(state.recommendations):
        if rec.at < cutoff:
            old_index = index
        elif rec.replicas > highest:
            highest = rec.replicas
    if old_index >= 0:
        state.recommendations[old_index] = Recommendation(desired, now)
    else:
        state.recommendations.append(Recommendation(desired, now))
    return highest


def scale_up_limit(current: int) -> int:
    return int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))


def convert_desired_replicas_with_rules(current: int, desired: int, minimum: int, maximum: int) -> tuple[int, str, str]:
    limit = scale_up_limit(current)
    if maximum > limit:
        allowed_max, reason = limit, "ScaleUpLimit"
        message = "the desired replica count is increasing faster than the maximum scale rate"
    else:
        allowed_max, reason = maximum, "TooManyReplicas"
        message = "the desired replica count is more than the maximum replica count"
    if desired < minimum:
        return minimum, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
    if desired > allowed_max:
        return allowed_max, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def normalize_without_behavior(
    state: HpaState, current: int, desired: int, minimum: int, maximum: int, now: float, window: float
) -> Normalized:
    stabilized = stabilize_recommendation(state, desired, now, window)
    able = "ScaleDownStabilized" if stabilized != desired else "ReadyForNewScale"
    replicas, limited, message = convert_desired_replicas_with_rules(current, stabilized, minimum, maximum)
    return Normalized(replicas, stabilized, able, limited, message)


# -- with behavior --------------------------------------------------------------------------------


def stabilize_with_behavior(
    state: HpaState, behavior: Behavior, current: int, desired: int, now: float
) -> tuple[int, str]:
    up_recommendation = desired
    up_cutoff = now - behavior.scale_up.stabilization_window_seconds
    down_recommendation = desired
    down_cutoff = now - behavior.scale_down.stabilization_window_seconds
    old_cutoff = min(up_cutoff, down_cutoff)
    old_index = -1
    for index, rec in enumerate(state.recommendations):
        at = rec.at
        if at > up_cutoff and rec.replicas < up_recommendation:
            up_recommendation = rec.replicas
        if at > down_cutoff and rec.replicas > down_recommendation:
            down_recommendation = rec.replicas
        if at < old_cutoff:
            old_index = index
    recommendation = current
    recommendation = max(recommendation, up_recommendation)
    recommendation = min(recommendation, down_recommendation)
    if old_index >= 0:
        state.recommendations[old_index] = Recommendation(desired, now)
    else:
        state.recommendations.append(Recommendation(desired, now))
    reason = "ScaleUpStabilized" if desired >= current else "ScaleDownStabilized"
    return recommendation, reason


def replicas_change_per_period(period_seconds: int, events: list[ScaleEvent], now: float) -> int:
    cutoff = now - period_seconds
    return sum(event.change for event in events if event.at > cutoff)


def scale_up_limit_with_rules(
    current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: ScalingRules, now: float
) -> int:
    if rules.select_policy == "Disabled":
        return current
    pick = min if rules.select_policy == "Min" else max
    result: int | None = None
    for policy in rules.policies:
        added = replicas_change_per_period(policy.period_seconds, up_events, now)
        deleted = replicas_change_per_period(policy.period_seconds, down_events, now)
        start = current - added + deleted
        proposed = start + policy.value if policy.kind == "Pods" else math.ceil(start * (1 + policy.value / 100))
        result = proposed if result is None else pick(result, proposed)
    return result if result is not None else (2**31 - 1 if pick is min else -(2**31))


def scale_down_limit_with_rules(
    current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: ScalingRules, now: float
) -> int:
    if rules.select_policy == "Disabled":
        return current
    pick = max if rules.select_policy == "Min" else min
    result: int | None = None
    for policy in rules.policies:
        added = replicas_change_per_period(policy.period_seconds, up_events, now)
        deleted = replicas_change_per_period(policy.period_seconds, down_events, now)
        start = current - added + deleted
        proposed = start - policy.value if policy.kind == "Pods" else int(start * (1 - policy.value / 100))
        result = proposed if result is None else pick(result, proposed)
    return result if result is not None else (-(2**31) if pick is max else 2**31 - 1)


def convert_with_behavior_rate(
    state: HpaState, behavior: Behavior, current: int, desired: int, minimum: int, maximum: int, now: float
) -> tuple[int, str, str]:
    if desired > current:
        limit = scale_up_limit_with_rules(
            current, state.scale_up_events, state.scale_down_events, behavior.scale_up, now
        )
        limit = max(limit, current)
        if maximum > limit:
            allowed, reason = limit, "ScaleUpLimit"
            message = "the desired replica count is increasing faster than the maximum scale rate"
        else:
            allowed, reason = maximum, "TooManyReplicas"
            message = "the desired replica count is more than the maximum replica count"
        if desired > allowed:
            return allowed, reason, message
    elif desired < current:
        limit = scale_down_limit_with_rules(
            current, state.scale_up_events, state.scale_down_events, behavior.scale_down, now
        )
        limit = min(limit, current)
        if minimum < limit:
            allowed, reason = limit, "ScaleDownLimit"
            message = "the desired replica count is decreasing faster than the maximum scale rate"
        else:
            allowed, reason = minimum, "TooFewReplicas"
            message = "the desired replica count is less than the minimum replica count"
        if desired < allowed:
            return allowed, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def normalize_with_behavior(
    state: HpaState, behavior: Behavior, current: int, desired: int, minimum: int, maximum: int, now: float
) -> Normalized:
    stabilized, reason = stabilize_with_behavior(state, behavior, current, desired, now)
    able = reason if stabilized != desired else "ReadyForNewScale"
    replicas, limited, message = convert_with_behavior_rate(state, behavior, current, stabilized, minimum, maximum, now)
    return Normalized(replicas, stabilized, able, limited, message)


def store_scale_event(state: HpaState, behavior: Behavior | None, previous: int, new: int, now: float) -> None:
    """Record a rescale (only when behavior is set, as the HPA does); reuse an outdated slot."""
    if behavior is None or new == previous:
        return
    if new > previous:
        events, longest, change = state.scale_up_events, behavior.scale_up.longest_period, new - previous
    else:
        events, longest, change = state.scale_down_events, behavior.scale_down.longest_period, previous - new
    cutoff = now - longest
    old_index = -1
    for index, event in enumerate(events):
        if event.at < cutoff:
            event.outdated = True
        if event.outdated:
            old_index = index
    if old_index >= 0:
        events[old_index] = ScaleEvent(change, now)
    else:
        events.append(ScaleEvent(change, now))
