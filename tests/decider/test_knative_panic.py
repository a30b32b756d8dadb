"""Knative KPA decisions (stable/panic windows, panic threshold, rate limits, scale-down delay), ported.

Source: knative/serving ``pkg/autoscaler/scaling/autoscaler_test.go``.  The Go tests feed the autoscaler
stable and panic window averages through a fake metric client; here they go straight to ``panic_decision``.
Test autoscaler defaults: panic threshold 200 %, max scale up and down rates 10, stable window 60 s.
"""

from __future__ import annotations

import pytest

from services.decider.engine.panic import PanicState, panic_decision, start_panic_state
from services.decider.engine.spec import PanicSpec

T0 = 1_700_000_000.0
MIN = 60.0


def kpa(target: float, **overrides: float) -> PanicSpec:
    settings: dict[str, float] = {
        "stable_window_seconds": 60.0,
        "panic_threshold_percentage": 200.0,
        "max_scale_up_rate": 10.0,
        "max_scale_down_rate": 10.0,
    }
    settings.update(overrides)
    return PanicSpec(metric="concurrency", target_per_replica=target, **settings)  # type: ignore[arg-type]


def fresh(ready: int = 1) -> PanicState:
    """newTestAutoscaler: the pod counter reports ``ready`` pods at creation."""
    state = PanicState()
    start_panic_state(state, ready, T0)
    return state


# TestAutoscalerScale (table): (label, target, stable, panic, ready, expected, prep)
SCALE = [
    ("AutoscalerNoDataAtZeroNoAutoscale", 10, 0, 0, 1, 0, {}),
    ("Autoscaler0TBC", 10, 50, 49, 1, 5, {}),
    ("AutoscalerStableModeNoChange", 10, 50, 50, 1, 5, {}),
    ("AutoscalerPanicStableLargerThanPanic", 1, 50, 30, 5, 50, {"panic_since": T0 - 5, "max_panic_pods": 5}),
    ("AutoscalerPanicStableLessThanPanic", 1, 20, 30, 5, 30, {"panic_since": T0 - 5, "max_panic_pods": 5}),
    ("AutoscalerStableModeNoChangeAlreadyScaled", 10, 50, 50, 5, 5, {}),
    ("AutoscalerStableModeIncreaseWithSmallScaleUpRate", 1, 3, 3.1, 2, 3, {"max_scale_up_rate": 1.1}),
    ("AutoscalerStableModeDecreaseWithSmallScaleDownRate", 10, 1, 1, 100, 90, {"max_scale_down_rate": 1.1}),
    ("AutoscalerPanicModeDoublePodCount", 10, 50, 100, 1, 10, {}),
]


@pytest.mark.parametrize(
    ("label", "target", "stable", "panic", "ready", "expected", "prep"), SCALE, ids=[c[0] for c in SCALE]
)
def test_autoscaler_scale(
    label: str, target: float, stable: float, panic: float, ready: int, expected: int, prep: dict[str, float]
) -> None:
    rates = {k: v for k, v in prep.items() if k.startswith("max_scale")}
    state = fresh(1)
    if "panic_since" in prep:
        state.panic_since = prep["panic_since"]
        state.max_panic_pods = int(prep["max_panic_pods"])
    desired, _ = panic_decision(kpa(target, **rates), stable, panic, ready, state, T0)
    assert desired == expected


def test_stable_mode_increase_with_concurrency_default() -> None:
    """TestAutoscalerStableModeIncreaseWithConcurrencyDefault."""
    spec, state = kpa(10), fresh()
    assert panic_decision(spec, 50, 10, 1, state, T0)[0] == 5
    assert panic_decision(spec, 100, 10, 1, state, T0)[0] == 10


def test_unpanic_after_slow_increase() -> None:
    """TestAutoscalerUnpanicAfterSlowIncrease: slow growth does not extend panic; it ends after the window."""
    spec, state = kpa(1), fresh()
    assert panic_decision(spec, 11, 25, 10, state, T0) == (25, True)
    assert state.panic_since == T0
    assert panic_decision(spec, 30, 41, 40, state, T0 + 30) == (41, True)
    assert state.panic_since == T0, "41 / 40 is under the threshold: panic time does not move"
    assert panic_decision(spec, 50, 56, 55, state, T0 + 62) == (50, False)


def test_extend_panic_window() -> None:
    """TestAutoscalerExtendPanicWindow: still surging at half the window moves the panic time."""
    spec, state = kpa(1), fresh()
    panic_decision(spec, 11, 25, 10, state, T0)
    assert panic_decision(spec, 30, 80, 40, state, T0 + 30) == (80, True)
    assert state.panic_since == T0 + 30


def test_stable_mode_decrease() -> None:
    """TestAutoscalerStableModeDecrease."""
    spec, state = kpa(10), fresh()
    assert panic_decision(spec, 100, 100, 8, state, T0)[0] == 10
    assert panic_decision(spec, 50, 50, 8, state, T0)[0] == 5


def test_no_traffic_scales_to_zero() -> None:
    """TestAutoscalerStableModeNoTrafficScaleToZero."""
    spec, state = kpa(10), fresh()
    assert panic_decision(spec, 1, 0, 1, state, T0)[0] == 1
    assert panic_decision(spec, 0, 0, 1, state, T0)[0] == 0


def test_panic_mode_exponential_track_and_stabilize() -> None:
    """TestAutoscalerPanicModeExponentialTrackAndStabilize."""
    spec, state = kpa(1), fresh()
    assert panic_decision(spec, 6, 6, 1, state, T0) == (6, True)
    assert panic_decision(spec, 36, 36, 6, state, T0) == (36, True)
    assert panic_decision(spec, 216, 216, 36, state, T0 + 1) == (216, True)
    assert panic_decision(spec, 1296, 1296, 216, state, T0 + 1) == (1296, True)
    assert panic_decision(spec, 1296, 1296, 1296, state, T0 + 2) == (1296, True)


def test_panic_then_unpanic_scale_down() -> None:
    """TestAutoscalerPanicThenUnPanicScaleDown: no scale-down until a stable window after the last panic."""
    spec, state = kpa(10), fresh()
    assert panic_decision(spec, 100, 100, 1, state, T0)[0] == 10
    assert panic_decision(spec, 100, 1000, 10, state, T0) == (100, True)
    assert panic_decision(spec, 1, 1, 10, state, T0 + 30) == (100, True)
    assert panic_decision(spec, 1, 1, 10, state, T0 + 61) == (1, False)


def test_rate_limit_scale_up_and_down() -> None:
    """TestAutoscalerRateLimitScaleUp / TestAutoscalerRateLimitScaleDown: x10 and /10 per decision."""
    spec, state = kpa(10), fresh()
    assert panic_decision(spec, 1000, 1001, 1, state, T0)[0] == 10
    assert panic_decision(spec, 1000, 1001, 10, state, T0)[0] == 100
    spec, state = kpa(10), fresh()
    assert panic_decision(spec, 1, 1, 100, state, T0)[0] == 10
    assert panic_decision(spec, 1, 1, 10, state, T0)[0] == 1


def test_one_pod_is_assumed_when_none_is_ready() -> None:
    """TestAutoscalerUseOnePodAsMinimumIfEndpointsNotFound."""
    assert panic_decision(kpa(10), 1000, 888, 0, fresh(), T0)[0] == 10


def test_start_in_panic_mode_only_with_more_than_one_ready_pod() -> None:
    """TestStartInPanicMode."""
    for ready in (0, 1):
        state = fresh(ready)
        assert state.panic_since is None and state.max_panic_pods == ready
    state = fresh(2)
    assert state.panic_since == T0 and state.max_panic_pods == 2


def test_scale_down_delay() -> None:
    """TestAutoscalerScaleDownDelay (simple and gradual): the highest decision of the trailing delay window."""
    spec = _with_delay(kpa(10, panic_threshold_percentage=10000))  # the Go spec's PanicThreshold is 100 (x)
    state = fresh(0)
    zero = T0
    assert panic_decision(spec, 40, 40, 0, state, zero + 2)[0] == 4
    assert panic_decision(spec, 0, 0, 0, state, zero + 5 * MIN)[0] == 4
    assert panic_decision(spec, 0, 0, 0, state, zero + 5 * MIN + 2)[0] == 0
    assert panic_decision(spec, 40, 40, 0, state, zero + 9 * MIN)[0] == 4
    assert panic_decision(spec, 30, 30, 0, state, zero + 10 * MIN)[0] == 4
    assert panic_decision(spec, 0, 0, 0, state, zero + 11 * MIN)[0] == 4
    assert panic_decision(spec, 0, 0, 0, state, zero + 14 * MIN)[0] == 3
    assert panic_decision(spec, 0, 0, 0, state, zero + 15 * MIN)[0] == 0


def _with_delay(spec: PanicSpec) -> PanicSpec:
    return PanicSpec(
        metric=spec.metric,
        target_per_replica=spec.target_per_replica,
        stable_window_seconds=spec.stable_window_seconds,
        panic_threshold_percentage=spec.panic_threshold_percentage,
        max_scale_up_rate=spec.max_scale_up_rate,
        max_scale_down_rate=spec.max_scale_down_rate,
        scale_down_delay_seconds=5 * MIN,
    )
