"""The HPA's normalization tests (stabilization, scale-rate limits, scale events), ported as tables.

Source: kubernetes/kubernetes ``pkg/controller/podautoscaler/horizontal_test.go``: TestNormalizeDesiredReplicas,
TestScalingWithRules, TestStoreScaleEvents, TestNormalizeDesiredReplicasWithBehavior and
TestCalculateScaleDownLimitWithBehaviors (the MinChange case).  ``now`` is a fixed instant: the Go tests'
``time.Now()`` offsets become offsets from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.decider.engine.normalize import (
    HpaState,
    Recommendation,
    ScaleEvent,
    convert_with_behavior_rate,
    replicas_change_per_period,
    scale_down_limit_with_rules,
    stabilize_recommendation,
    stabilize_with_behavior,
    store_scale_event,
)
from services.decider.engine.spec import Behavior, RateLimit, ScalingRules
from services.decider.policy.compile import SCALE_DOWN_DEFAULT_POLICIES, SCALE_UP_DEFAULT

NOW = 1_700_000_000.0
MINUTE = 60.0


def rules(pods: int, pods_period: int, percent: int, percent_period: int, window: int) -> ScalingRules:
    """generateScalingRules of the Go tests (selectPolicy Max)."""
    policies = []
    if pods:
        policies.append(RateLimit("Pods", pods, pods_period))
    if percent:
        policies.append(RateLimit("Percent", percent, percent_period))
    return ScalingRules(window, "Max", tuple(policies))


def uniform_events(changes: list[int], period: int) -> list[ScaleEvent]:
    """generateEventsUniformDistribution: events centred in equal segments of the last ``period`` seconds."""
    segment = period / len(changes)
    return [ScaleEvent(change, NOW - int(period - segment * (i + 1) + segment / 2)) for i, change in enumerate(changes)]


DEFAULT_DOWN = ScalingRules(300, "Max", SCALE_DOWN_DEFAULT_POLICIES)


# -- TestNormalizeDesiredReplicas (no behavior: max over the 5 minute window) ---------------------------

LEGACY = [
    ("empty log", [], 5, 5, 1),
    ("stabilize", [(4, -2 * MINUTE), (5, -1 * MINUTE)], 3, 5, 3),
    ("no stabilize", [(1, -2 * MINUTE), (2, -1 * MINUTE)], 3, 3, 3),
    ("no stabilize - old recommendations", [(10, -10 * MINUTE), (9, -9 * MINUTE)], 3, 3, 2),
    (
        "stabilize - old recommendations",
        [(10, -10 * MINUTE), (4, -1 * MINUTE), (5, -2 * MINUTE), (9, -9 * MINUTE)],
        3,
        5,
        4,
    ),
]


@pytest.mark.parametrize(("name", "history", "desired", "expected", "log_length"), LEGACY, ids=[c[0] for c in LEGACY])
def test_normalize_desired_replicas_without_behavior(
    name: str, history: list[tuple[int, float]], desired: int, expected: int, log_length: int
) -> None:
    """TestNormalizeDesiredReplicas: the highest recommendation of the window wins; old slots are reused."""
    state = HpaState(recommendations=[Recommendation(r, NOW + dt) for r, dt in history], initialized=True)
    assert stabilize_recommendation(state, desired, NOW, 5 * MINUTE) == expected
    assert len(state.recommendations) == log_length


# -- TestScalingWithRules (convertDesiredReplicasWithBehaviorRate) ----------------------------------------


@dataclass(frozen=True)
class RateCase:
    name: str
    current: int
    desired: int
    minimum: int
    maximum: int
    expected: int
    condition: str
    up: ScalingRules = SCALE_UP_DEFAULT
    down: ScalingRules = DEFAULT_DOWN
    up_events: list[ScaleEvent] = field(default_factory=list)
    down_events: list[ScaleEvent] = field(default_factory=list)


E159 = [1, 5, 9]
RATE_CASES = [
    RateCase("prenormalized desired replicas within range", 5, 7, 3, 8, 7, "DesiredWithinRange"),
    RateCase("prenormalized desired replicas < minReplicas", 3, 1, 2, 8, 2, "TooFewReplicas"),
    RateCase("prenormalized desired replicas within range when minReplicas is 0", 1, 0, 0, 10, 0, "DesiredWithinRange"),
    RateCase("maxReplicas is the limit because maxReplicas < scaleUpLimit", 20, 1000, 1, 10, 10, "TooManyReplicas"),
    RateCase(
        "desired replica count is more than the maximum replica count", 100, 1000, 100, 150, 150, "TooManyReplicas"
    ),
    RateCase(
        "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
        3,
        1000,
        1,
        2000,
        4,
        "ScaleUpLimit",
        up=rules(0, 0, 1, 60, 0),
    ),
    RateCase("scaleUp with default behavior", 10, 50, 1, 1000, 20, "ScaleUpLimit"),
    RateCase(
        "scaleUp with pods policy larger than percent policy",
        10,
        500,
        1,
        1000,
        110,
        "ScaleUpLimit",
        up=rules(100, 60, 100, 60, 0),
    ),
    RateCase(
        "scaleUp with percent policy larger than pods policy",
        10,
        500,
        1,
        1000,
        20,
        "ScaleUpLimit",
        up=rules(2, 60, 100, 60, 0),
    ),
    RateCase(
        "scaleUp with spec MaxReplicas limitation with large pod policy",
        10,
        50,
        1,
        1000,
        50,
        "DesiredWithinRange",
        up=rules(100, 60, 0, 0, 0),
    ),
    RateCase(
        "scaleUp with spec MaxReplicas limitation with large percent policy",
        10,
        50,
        1,
        1000,
        50,
        "DesiredWithinRange",
        up=rules(10000, 60, 0, 0, 0),
    ),
    RateCase("scaleUp with pod policy limitation", 10, 50, 1, 1000, 40, "ScaleUpLimit", up=rules(30, 60, 0, 0, 0)),
    RateCase("scaleUp with percent policy limitation", 10, 50, 1, 1000, 30, "ScaleUpLimit", up=rules(0, 0, 200, 60, 0)),
    RateCase(
        "scaleDown with percent policy larger than pod policy",
        100,
        2,
        1,
        1000,
        80,
        "ScaleDownLimit",
        down=rules(20, 60, 1, 60, 300),
    ),
    RateCase(
        "scaleDown with pod policy larger than percent policy",
        100,
        2,
        1,
        1000,
        98,
        "ScaleDownLimit",
        down=rules(2, 60, 1, 60, 300),
    ),
    RateCase(
        "scaleDown with spec MinReplicas=nil limitation with large pod policy",
        10,
        0,
        1,
        1000,
        1,
        "TooFewReplicas",
        down=rules(100, 60, 0, 0, 300),
    ),
    RateCase(
        "scaleDown with spec MinReplicas limitation with large percent policy",
        10,
        2,
        5,
        1000,
        5,
        "TooFewReplicas",
        down=rules(0, 0, 100, 60, 300),
    ),
    RateCase("scaleDown with pod policy limitation", 10, 2, 1, 1000, 5, "ScaleDownLimit", down=rules(5, 60, 0, 0, 300)),
    RateCase(
        "scaleDown with percent policy limitation",
        10,
        5,
        1,
        1000,
        5,
        "DesiredWithinRange",
        down=rules(0, 0, 50, 60, 300),
    ),
    RateCase(
        "scaleUp with spec MaxReplicas limitation with large pod policy and events",
        100,
        500,
        1,
        200,
        200,
        "TooManyReplicas",
        up=rules(300, 60, 0, 0, 0),
        up_events=uniform_events(E159, 120),
    ),
    RateCase(
        "scaleUp with spec MaxReplicas limitation with large percent policy and events",
        100,
        500,
        1,
        200,
        200,
        "TooManyReplicas",
        up=rules(0, 0, 10000, 60, 0),
        up_events=uniform_events(E159, 120),
    ),
    RateCase(
        "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
        100,
        500,
        1,
        1000,
        100,
        "ScaleUpLimit",
        up=rules(5, 120, 0, 0, 0),
        up_events=uniform_events(E159, 120),
    ),
    RateCase(
        "scaleUp with pod policy and previous scale up events",
        100,
        500,
        1,
        1000,
        235,
        "ScaleUpLimit",
        up=rules(150, 120, 0, 0, 0),
        up_events=uniform_events(E159, 120),
    ),
    RateCase(
        "scaleUp with percent policy and previous scale up events",
        100,
        500,
        1,
        1000,
        255,
        "ScaleUpLimit",
        up=rules(0, 0, 200, 120, 0),
        up_events=uniform_events(E159, 120),
    ),
    RateCase(
        "scaleUp with percent policy and previous scale up and down events",
        6,
        24,
        1,
        1000,
        16,
        "ScaleUpLimit",
        up=rules(0, 0, 300, 300, 0),
        up_events=uniform_events([4], 120),
        down_events=uniform_events([2], 120),
    ),
    RateCase(
        "scaleDown with default policy and previous events",
        10,
        5,
        1,
        1000,
        5,
        "DesiredWithinRange",
        down_events=uniform_events(E159, 120),
    ),
    RateCase(
        "scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events",
        100,
        0,
        1,
        1000,
        1,
        "TooFewReplicas",
        down=rules(115, 120, 0, 0, 300),
        down_events=uniform_events(E159, 120),
    ),
    RateCase(
        "scaleDown with spec MinReplicas limitation with large pod policy and previous events",
        100,
        0,
        5,
        1000,
        5,
        "TooFewReplicas",
        down=rules(130, 120, 0, 0, 300),
        down_events=uniform_events(E159, 120),
    ),
    RateCase(
        "scaleDown with spec MinReplicas limitation with large percent policy and previous events",
        100,
        2,
        5,
        1000,
        5,
        "TooFewReplicas",
        down=rules(0, 0, 100, 120, 300),
        down_events=uniform_events(E159, 120),
    ),
    RateCase(
        "scaleDown with pod policy limitation and previous events",
        100,
        2,
        1,
        1000,
        100,
        "ScaleDownLimit",
        down=rules(5, 120, 0, 0, 300),
        down_events=uniform_events(E159, 120),
    ),
    RateCase(
        "scaleDown with percent policy limitation and previous events",
        100,
        0,
        1,
        1000,
        56,
        "ScaleDownLimit",
        down=rules(0, 0, 50, 120, 300),
        down_events=uniform_events([2, 4, 6], 120),
    ),
    RateCase(
        "scaleDown with percent policy and previous scale up and down events",
        10,
        1,
        1,
        1000,
        6,
        "ScaleDownLimit",
        down=rules(0, 0, 50, 180, 0),
        up_events=uniform_events([2], 120),
        down_events=uniform_events([4], 120),
    ),
    RateCase(
        "scaleDown with previous events preventing further scale down",
        100,
        0,
        1,
        1000,
        100,
        "ScaleDownLimit",
        down=rules(0, 0, 10, 120, 300),
        down_events=uniform_events([10, 10, 10], 120),
    ),
    RateCase(
        "scaleDown with with previous events still allowing more scale down",
        10,
        5,
        1,
        1000,
        5,
        "DesiredWithinRange",
        down=rules(0, 0, 1000, 120, 300),
        down_events=uniform_events([10, 10, 10], 120),
    ),
    RateCase(
        "check 'outdated' flag for events for one behavior for up",
        100,
        200,
        1,
        1000,
        200,
        "DesiredWithinRange",
        up=rules(1000, 60, 0, 0, 0),
        up_events=uniform_events([8, 12, 9, 11], 120),
    ),
    RateCase(
        "check that events were not marked 'outdated' for two different policies in the behavior for up",
        100,
        200,
        1,
        1000,
        200,
        "DesiredWithinRange",
        up=rules(1000, 120, 100, 60, 0),
        up_events=uniform_events([8, 12, 9, 11], 120),
    ),
    RateCase(
        "check that events were marked 'outdated' for two different policies in the behavior for up",
        100,
        200,
        1,
        1000,
        200,
        "DesiredWithinRange",
        up=rules(1000, 30, 100, 60, 0),
        up_events=uniform_events([8, 12, 9, 11], 120),
    ),
    RateCase(
        "check 'outdated' flag for events for one behavior for down",
        100,
        5,
        1,
        1000,
        5,
        "DesiredWithinRange",
        down=rules(1000, 60, 0, 0, 300),
        down_events=uniform_events([8, 12, 9, 11], 120),
    ),
    RateCase(
        "check that events were not marked 'outdated' for two different policies in the behavior for down",
        100,
        5,
        1,
        1000,
        5,
        "DesiredWithinRange",
        down=rules(1000, 120, 100, 60, 300),
        down_events=uniform_events([8, 12, 9, 11], 120),
    ),
    RateCase(
        "check that events were marked 'outdated' for two different policies in the behavior for down",
        100,
        5,
        1,
        1000,
        5,
        "DesiredWithinRange",
        down=rules(1000, 30, 100, 60, 300),
        down_events=uniform_events([8, 12, 9, 11], 120),
    ),
]


@pytest.mark.parametrize("case", RATE_CASES, ids=[c.name for c in RATE_CASES])
def test_scaling_with_rules(case: RateCase) -> None:
    """TestScalingWithRules: Pods/Percent policies over recent scale events, then min/max."""
    state = HpaState(scale_up_events=list(case.up_events), scale_down_events=list(case.down_events))
    behavior = Behavior(scale_up=case.up, scale_down=case.down)
    replicas, condition, _ = convert_with_behavior_rate(
        state, behavior, case.current, case.desired, case.minimum, case.maximum, NOW
    )
    assert (replicas, condition) == (case.expected, case.condition)


def test_scale_down_limit_with_min_change_policy() -> None:
    """TestCalculateScaleDownLimitWithBehaviors: selectPolicy Min picks the smallest change (5 - 2 = 3)."""
    min_rules = ScalingRules(300, "Min", (RateLimit("Pods", 2, 60), RateLimit("Percent", 50, 60)))
    assert scale_down_limit_with_rules(5, [], [], min_rules, NOW) == 3


# -- TestStoreScaleEvents ------------------------------------------------------------------------------------

STORE_CASES = [
    ("empty entries with default behavior", None, [], [], 0),
    ("empty entries with two-policy-behavior", rules(10, 60, 100, 60, 0), [], [(5, False)], 0),
    ("one outdated entry to be kept untouched without behavior", None, [(7, -61)], [(7, False)], 0),
    ("one outdated entry to be replaced with behavior", rules(10, 60, 100, 60, 0), [(7, -61)], [(5, False)], 0),
    (
        "one actual entry to be not touched with behavior",
        rules(10, 60, 100, 60, 0),
        [(7, -58)],
        [(7, False), (5, False)],
        7,
    ),
    (
        "two entries, one of them to be replaced",
        rules(10, 60, 0, 0, 0),
        [(7, -61), (6, -59)],
        [(5, False), (6, False)],
        6,
    ),
    (
        "replace one entry, use policies with different periods",
        rules(10, 60, 100, 30, 0),
        [(8, -29), (6, -59), (7, -61), (9, -61)],
        [(8, False), (6, False), (7, True), (5, False)],
        14,
    ),
    (
        "two entries, both actual",
        rules(10, 120, 100, 30, 0),
        [(7, -58), (6, -59)],
        [(7, False), (6, False), (5, False)],
        13,
    ),
]


@pytest.mark.parametrize(
    ("name", "scaling", "previous", "expected", "change"), STORE_CASES, ids=[c[0] for c in STORE_CASES]
)
@pytest.mark.parametrize("direction", ["up", "down"])
def test_store_scale_events(
    name: str,
    scaling: ScalingRules | None,
    previous: list[tuple[int, float]],
    expected: list[tuple[int, bool]],
    change: int,
    direction: str,
) -> None:
    """TestStoreScaleEvents: recent changes are summed; outdated slots are reused; no behavior, no events."""
    events = [ScaleEvent(c, NOW + dt) for c, dt in previous]
    state = HpaState()
    if direction == "up":
        state.scale_up_events = events
    else:
        state.scale_down_events = events
    assert replicas_change_per_period(60, events, NOW) == change
    behavior = None
    if scaling is not None:
        other = ScalingRules(0, "Max", ())
        behavior = Behavior(scale_up=scaling, scale_down=other) if direction == "up" else Behavior(other, scaling)
    new = 10 + 5 if direction == "up" else 10 - 5
    store_scale_event(state, behavior, 10, new, NOW)
    stored = state.scale_up_events if direction == "up" else state.scale_down_events
    if behavior is None and previous:
        assert [(e.change, e.outdated) for e in stored] == [(c, False) for c, _ in previous]
        return
    assert [(e.change, e.outdated) for e in stored] == expected


# -- TestNormalizeDesiredReplicasWithBehavior (stabilization windows per direction) ------------------------

M = MINUTE
BEHAVIOR_CASES = [
    ("empty recommendations for scaling down", [], 100, 5, 5, [5], 0, 0),
    ("simple scale down stabilization", [(4, -2 * M), (5, -1 * M)], 100, 3, 5, [4, 5, 3], 0, 180),
    ("simple scale up stabilization", [(4, -2 * M), (5, -1 * M)], 1, 7, 4, [4, 5, 7], 300, 0),
    ("no scale down stabilization", [(1, -2 * M), (2, -1 * M)], 100, 3, 3, [1, 2, 3], 300, 0),
    ("no scale up stabilization", [(4, -2 * M), (5, -1 * M)], 1, 3, 3, [4, 5, 3], 0, 300),
    (
        "no scale down stabilization, reuse recommendation element",
        [(10, -10 * M), (9, -9 * M)],
        100,
        3,
        3,
        [10, 3],
        0,
        0,
    ),
    (
        "no scale up stabilization, reuse recommendation element",
        [(10, -10 * M), (9, -9 * M)],
        1,
        100,
        100,
        [10, 100],
        0,
        0,
    ),
    (
        "scale down stabilization, reuse one of obsolete recommendation element",
        [(10, -10 * M), (4, -1 * M), (5, -2 * M), (9, -9 * M)],
        100,
        3,
        5,
        [10, 4, 5, 3],
        0,
        180,
    ),
    (
        "scale up stabilization, reuse one of obsolete recommendation element",
        [(10, -100 * M), (6, -1 * M), (5, -2 * M), (9, -3 * M)],
        1,
        100,
        5,
        [100, 6, 5, 9],
        300,
        0,
    ),
    (
        "scale up and down stabilization, do not scale up when prenormalized rec goes down",
        [(2, -100 * M), (3, -3 * M)],
        2,
        1,
        2,
        None,
        300,
        300,
    ),
    (
        "scale up and down stabilization, do not scale down when prenormalized rec goes up",
        [(2, -100 * M), (1, -3 * M)],
        2,
        3,
        2,
        None,
        300,
        300,
    ),
]


@pytest.mark.parametrize(
    ("name", "history", "current", "desired", "expected", "stored", "up_window", "down_window"),
    BEHAVIOR_CASES,
    ids=[c[0] for c in BEHAVIOR_CASES],
)
def test_normalize_desired_replicas_with_behavior(
    name: str,
    history: list[tuple[int, float]],
    current: int,
    desired: int,
    expected: int,
    stored: list[int] | None,
    up_window: int,
    down_window: int,
) -> None:
    """TestNormalizeDesiredReplicasWithBehavior: clamp current between min-of-up-window and max-of-down-window."""
    state = HpaState(recommendations=[Recommendation(r, NOW + dt) for r, dt in history], initialized=True)
    behavior = Behavior(ScalingRules(up_window, "Max", ()), ScalingRules(down_window, "Max", ()))
    stabilized, _ = stabilize_with_behavior(state, behavior, current, desired, NOW)
    assert stabilized == expected
    if stored is not None:
        assert [r.replicas for r in state.recommendations] == stored
