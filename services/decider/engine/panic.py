"""Knative KPA panic mode: stable and panic windows, a panic threshold, no scale-down while panicking."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import msgspec

from services.decider.engine.aggregate import aggregate
from services.decider.engine.observation import Observation
from services.decider.engine.spec import PanicSpec


@dataclass(slots=True)
class PanicState:
    history: deque[tuple[float, float]] = field(default_factory=deque)
    """(time, observed total) of recent snapshots, kept for one stable window."""
    panic_since: float | None = None
    """When panic mode was last entered or extended (None: not panicking)."""
    max_panic_pods: int = 0
    started: bool = False
    last_sample_at: float = -math.inf
    delay_window: deque[tuple[float, int]] = field(default_factory=deque)
    """(time, desired) over the scale-down delay."""

    @property
    def panicking(self) -> bool:
        return self.panic_since is not None


class PanicVerdict(msgspec.Struct, frozen=True):
    replicas: int | None
    stable_average: float
    panic_average: float
    panicking: bool
    note: str


def _mean_since(history: deque[tuple[float, float]], since: float) -> float | None:
    values = [value for at, value in history if at > since]
    return math.fsum(values) / len(values) if values else None


def start_panic_state(state: PanicState, ready_pods: int, now: float) -> None:
    """A new autoscaler starts in panic when more than one pod is ready (it never scales down blind)."""
    state.started = True
    state.max_panic_pods = ready_pods
    if ready_pods > 1:
        state.panic_since = now


def panic_decision(
    spec: PanicSpec, stable: float, panic: float, ready_pods: int, state: PanicState, now: float
) -> tuple[int, bool]:
    """Knative's KPA decision from the stable and panic window averages: (desired pods, panicking)."""
    ready = max(1, ready_pods)
    max_up = math.ceil(spec.max_scale_up_rate * ready)
    max_down = math.floor(ready / spec.max_scale_down_rate)
    stable_raw = math.ceil(stable / spec.target_per_replica)
    panic_raw = math.ceil(panic / spec.target_per_replica)
    stable_pods = min(max(stable_raw, max_down), max_up)
    panic_pods = min(max(panic_raw, max_down), max_up)
    if panic_raw / ready >= spec.panic_threshold_percentage / 100.0:
        state.panic_since = now  # enter, or extend
    elif state.panic_since is not None and state.panic_since + spec.stable_window_seconds < now:
        state.panic_since = None
        state.max_panic_pods = 0
    desired = stable_pods
    if state.panic_since is not None:
        desired = max(desired, panic_pods)
        if desired > state.max_panic_pods:
            state.max_panic_pods = desired
        else:
            desired = state.max_panic_pods
    if spec.scale_down_delay_seconds > 0:
        delayed = state.delay_window
        delayed.append((now, desired))
        while delayed and delayed[0][0] <= now - spec.scale_down_delay_seconds:
            delayed.popleft()
        desired = max(value for _, value in delayed)
    return desired, state.panic_since is not None


def evaluate_panic(spec: PanicSpec, observation: Observation, ready_pods: int, state: PanicState) -> PanicVerdict:
    """Window averages from the snapshots seen so far, then :func:`panic_decision`."""
    now = observation.now
    if not state.started:
        start_panic_state(state, ready_pods, now)
    observed = aggregate(observation, spec.metric, "sum" if spec.aggregate == "sum" else "avg")
    stamp = observation.samples_at or now
    if observed is not None and stamp > state.last_sample_at:
        if spec.aggregate == "avg":
            observed *= max(1, ready_pods)
        state.history.append((stamp, observed))
        state.last_sample_at = stamp
    while state.history and state.history[0][0] <= now - spec.stable_window_seconds:
        state.history.popleft()
    stable = _mean_since(state.history, now - spec.stable_window_seconds)
    panic = _mean_since(state.history, now - spec.panic_window_seconds)
    if stable is None or panic is None:
        return PanicVerdict(None, 0.0, 0.0, state.panicking, "no samples in the stable window")
    desired, panicking = panic_decision(spec, stable, panic, ready_pods, state, now)
    if panicking:
        note = f"panicking: panic average {panic:g} over {spec.panic_window_seconds:g}s"
    else:
        note = f"stable average {stable:g} over {spec.stable_window_seconds:g}s"
    return PanicVerdict(desired, stable, panic, panicking, note)
