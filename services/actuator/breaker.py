"""A circuit breaker per target: consecutive failures pause the target; a trial call later decides.

closed --(threshold consecutive failures)--> open --(open_seconds pass)--> half_open
half_open --(trial succeeds)--> closed;  half_open --(trial fails)--> open again.
"""

from __future__ import annotations

from typing import Literal

from shared.clock import Clock

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts consecutive failures of one target; time comes from an injected clock."""

    def __init__(self, *, failure_threshold: int, open_seconds: float, clock: Clock) -> None:
        self._threshold = failure_threshold
        self._open_seconds = open_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock.now() >= self._opened_at + self._open_seconds:
            return "half_open"
        return "open"

    @property
    def reopens_at(self) -> float | None:
        """When an open breaker lets a trial through (None when closed)."""
        return None if self._opened_at is None else self._opened_at + self._open_seconds

    def allow(self) -> bool:
        """May the target be acted on now?  In half-open state only one trial at a time is let through."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def release_trial(self) -> None:
        """The allowed call never reached the backend (e.g. the decision was skipped): free the trial slot."""
        self._trial_in_flight = False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> bool:
        """Count a failure; True when this failure opened (or re-opened) the breaker."""
        self._failures += 1
        was_trial = self._trial_in_flight
        self._trial_in_flight = False
        if was_trial or (self._opened_at is None and self._failures >= self._threshold):
            self._opened_at = self._clock.now()
            return True
        return False
