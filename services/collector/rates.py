"""Counters turned into per-second rates, one series at a time.

A rate needs two observations; the first observation of a series yields nothing.  A counter
that goes down was reset (the process restarted): the rate then counts from zero.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable


class CounterRates:
    """Per-series rate of a monotonically increasing counter over a trailing window."""

    def __init__(self, window_seconds: float = 0.0) -> None:
        self._window = window_seconds
        self._points: dict[Hashable, deque[tuple[float, float]]] = {}
        self._seen: set[Hashable] = set()

    def observe(self, key: Hashable, value: float, at: float) -> float | None:
        """Record ``value`` at time ``at``; return the rate per second, or None while unknown."""
        self._seen.add(key)
        points = self._points.setdefault(key, deque())
        if points and at <= points[-1][0]:
            return None  # same or older observation: no new information
        if points and value < points[-1][1]:
            # Counter reset: the counter restarted from zero somewhere after the last point.
            previous_at = points[-1][0]
            points.clear()
            points.append((previous_at, 0.0))
        points.append((at, value))
        # Keep the newest point that is at least a window old, plus everything younger.
        while len(points) > 2 and points[1][0] <= at - self._window:
            points.popleft()
        if len(points) < 2:
            return None
        first_at, first_value = points[0]
        return (value - first_value) / (at - first_at)

    def forget_unseen(self) -> None:
        """Drop series not observed since the last call (replicas that went away)."""
        for key in list(self._points):
            if key not in self._seen:
                del self._points[key]
        self._seen.clear()
