"""How far and how often a target may change: bounds, maximum step, minimum interval between changes."""

from __future__ import annotations

import msgspec

from shared.clock import Clock


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """The replica count the actuator will ask for, and why it differs from the decision (if it does)."""

    replicas: int
    notes: tuple[str, ...] = ()


def plan_change(*, current: int, desired: int, min_replicas: int, max_replicas: int, max_step: int) -> Plan:
    """Clamp ``desired`` into [min, max], then move from ``current`` by at most ``max_step``.

    A target that is already outside its bounds is brought back inside them even if that takes a
    larger step: the bounds are a promise, the step limit is a preference.
    """
    notes: list[str] = []
    bounded = desired
    if bounded > max_replicas:
        notes.append(f"clamped to max_replicas {max_replicas}")
        bounded = max_replicas
    elif bounded < min_replicas:
        notes.append(f"clamped to min_replicas {min_replicas}")
        bounded = min_replicas
    start = min(max(current, min_replicas), max_replicas)
    step = bounded - start
    if abs(step) > max_step:
        limited = start + (max_step if step > 0 else -max_step)
        notes.append(f"step limited to {max_step} per change ({current} -> {limited} instead of {bounded})")
        bounded = limited
    return Plan(replicas=bounded, notes=tuple(notes))


class ChangeRateLimiter:
    """At most one change per target per interval; time comes from an injected clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last_change: dict[str, float] = {}

    def wait_needed(self, target: str, interval: float) -> float:
        """Seconds until the target may change again (0 when it may change now)."""
        last = self._last_change.get(target)
        if last is None:
            return 0.0
        return max(0.0, last + interval - self._clock.now())

    def record_change(self, target: str) -> None:
        self._last_change[target] = self._clock.now()

    def last_change(self, target: str) -> float | None:
        return self._last_change.get(target)
