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
from services.decider.engine.window import RecommendationWindow

SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0


@dataclass(slots=True, frozen=True)
class Recommendation:
    """Frozen: the stabilization index (``HpaState.window``) holds the same objects as the list."""

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
    window: RecommendationWindow[Recommendation] | None = field(default=None, repr=False, compare=False)
    """Not persisted: an exact index over ``recommendations``, rebuilt whenever it no longer fits them."""


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
    cutoff = now - window
    index = _indexed_window(state, with_behavior=False, now=now, up_cutoff=cutoff, down_cutoff=cutoff)
    if index is None:
        return _scan_recommendation(state, desired, now, cutoff)
    index.advance(cutoff, cutoff)
    highest = index.window_max()
    index.record(state.recommendations, Recommendation(desired, now))
    return desired if highest is None or highest <= desired else highest


def _scan_recommendation(state: HpaState, desired: int, now: float, cutoff: float) -> int:
    """``stabilize_recommendation`` by scanning the whole history (when it cannot be indexed)."""
    highest = desired
    old_index = -1
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


def _indexed_window(
    state: HpaState, *, with_behavior: bool, now: float, up_cutoff: float, down_cutoff: float
) -> RecommendationWindow[Recommendation] | None:
    """The state's index if it still fits, else a new one built from the list; None when the list needs the scan.

    The scan is needed when a time is NaN, or ``now`` is older than a recorded time (a clock went back).
    """
    history = state.recommendations
    index = state.window
    if index is not None and index.fits(
        history, with_behavior=with_behavior, now=now, up_cutoff=up_cutoff, down_cutoff=down_cutoff
    ):
        return index
    index = None
    if RecommendationWindow.can_index(history):
        index = RecommendationWindow(history, with_behavior=with_behavior)
        if not index.fits(history, with_behavior=with_behavior, now=now, up_cutoff=up_cutoff, down_cutoff=down_cutoff):
            index = None
    state.window = index
    return index


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
    up_cutoff = now - behavior.scale_up.stabilization_window_seconds
    down_cutoff = now - behavior.scale_down.stabilization_window_seconds
    index = _indexed_window(state, with_behavior=True, now=now, up_cutoff=up_cutoff, down_cutoff=down_cutoff)
    if index is None:
        up_recommendation, down_recommendation = _scan_with_behavior(state, desired, now, up_cutoff, down_cutoff)
    else:
        index.advance(up_cutoff, down_cutoff)
        lowest, highest = index.window_min(), index.window_max()
        up_recommendation = desired if lowest is None or lowest >= desired else lowest
        down_recommendation = desired if highest is None or highest <= desired else highest
        index.record(state.recommendations, Recommendation(desired, now))
    recommendation = current
    recommendation = max(recommendation, up_recommendation)
    recommendation = min(recommendation, down_recommendation)
    reason = "ScaleUpStabilized" if desired >= current else "ScaleDownStabilized"
    return recommendation, reason


def _scan_with_behavior(
    state: HpaState, desired: int, now: float, up_cutoff: float, down_cutoff: float
) -> tuple[int, int]:
    """The scale-up and scale-down recommendations by scanning the whole history; records ``desired``."""
    up_recommendation = desired
    down_recommendation = desired
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
    if old_index >= 0:
        state.recommendations[old_index] = Recommendation(desired, now)
    else:
        state.recommendations.append(Recommendation(desired, now))
    return up_recommendation, down_recommendation


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
