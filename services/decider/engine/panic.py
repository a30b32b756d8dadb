"""Knative KPA panic mode: stable and panic windows, a panic threshold, no scale-down while panicking."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

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

    @property
    def panicking(self) -> bool:
        return self.panic_since is not None


@dataclass(frozen=True, slots=True)
class PanicVerdict:
    replicas: int | None
    stable_average: float
    panic_average: float
    panicking: bool
    note: str


def _mean_since(history: deque[tuple[float, float]], since: float) -> float | None:
    values = [value for at, value in history if at > since]
    return math.fsum(values) / len(values) if values else None


def evaluate_panic(spec: PanicSpec, observation: Observation, ready_pods: int, state: PanicState) -> PanicVerdict:
    now = observation.now
    ready = max(1, ready_pods)
    if not state.started:
        state.started = True
        if ready > 1:  # a new autoscaler never scales down without history
            state.panic_since = now
            state.max_panic_pods = ready
    observed = aggregate(observation, spec.metric, "sum" if spec.aggregate == "sum" else "avg")
    stamp = observation.samples_at or now
    if observed is not None and stamp > state.last_sample_at:
        if spec.aggregate == "avg":
            observed *= ready
        state.history.append((stamp, observed))
        state.last_sample_at = stamp
    while state.history and state.history[0][0] <= now - spec.stable_window_seconds:
        state.history.popleft()
    stable = _mean_since(state.history, now - spec.stable_window_seconds)
    panic = _mean_since(state.history, now - spec.panic_window_seconds)
    if stable is None or panic is None:
        return PanicVerdict(None, 0.0, 0.0, state.panicking, "no samples in the stable window")
    max_up = math.ceil(spec.max_scale_up_rate * ready)
    max_down = math.floor(ready / spec.max_scale_down_rate)
    stable_pods = min(max(math.ceil(stable / spec.target_per_replica), max_down), max_up)
    panic_pods = min(max(math.ceil(panic / spec.target_per_replica), max_down), max_up)
    over = panic_pods / ready >= spec.panic_threshold_percentage / 100.0
    if over:
        state.panic_since = now
    elif state.panic_since is not None and state.panic_since + spec.stable_window_seconds <= now:
        state.panic_since = None
        state.max_panic_pods = 0
    if state.panic_since is not None:
        state.max_panic_pods = max(state.max_panic_pods, panic_pods)
        desired = state.max_panic_pods
        note = f"panicking: panic average {panic:g} over {spec.panic_window_seconds:g}s"
    else:
        desired = stable_pods
        note = f"stable average {stable:g} over {spec.stable_window_seconds:g}s"
    return PanicVerdict(desired, stable, panic, state.panic_since is not None, note)
