"""An exact index over the HPA's recommendation history, so stabilization need not scan it on every evaluation.

The history is a list the HPA reuses slot by slot: each evaluation reads the recommendations inside the
stabilization window(s), then overwrites the highest-indexed recommendation older than the oldest cutoff (or
appends).  A scan of the list answers that in O(n) per evaluation; this index answers it in amortized O(1), given
three things the caller checks with :meth:`RecommendationWindow.fits` before every use:

- time and cutoffs never go backwards (``now`` is not older than any recorded time, and no cutoff is older than
  the previous one), so what has left a window never comes back into it;
- the stabilization mode (with or without ``behavior``) is the one the index was built for;
- the list holds the same recommendations as the index's own copy (one C-level identity comparison; the
  recommendations themselves are frozen).

When any of these breaks, the caller builds a new index from the list (or, when the list holds a NaN time,
falls back to the scan).  The index keeps:

- ``pending``: indices of recommendations not yet older than the oldest cutoff, in time order;
- ``old``: a max-heap (negated) of indices already older than the oldest cutoff: its top is the slot to reuse;
- ``highest`` / ``lowest``: monotonic queues (time order, replicas strictly decreasing / increasing) of the
  recommendations still inside the scale-down / scale-up window: their fronts are the window's max / min.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Generic, Protocol, TypeVar


class Timed(Protocol):
    @property
    def replicas(self) -> int: ...

    @property
    def at(self) -> float: ...


R = TypeVar("R", bound=Timed)


class RecommendationWindow(Generic[R]):
    """The index of one target's recommendation history, for one stabilization mode.

    ``with_behavior``: windows are ``at > cutoff`` (scale-up min and scale-down max); without it, the single
    scale-down window is ``at >= cutoff``.  In both modes a recommendation is old when ``at < oldest cutoff``.
    """

    __slots__ = ("copy", "down_cutoff", "highest", "latest", "lowest", "old", "pending", "up_cutoff", "with_behavior")

    def __init__(self, history: list[R], *, with_behavior: bool) -> None:
        self.with_behavior = with_behavior
        self.copy: list[R] = list(history)
        self.old: list[int] = []
        times = [rec.at for rec in history]
        order = sorted(range(len(history)), key=times.__getitem__)
        self.pending: deque[int] = deque(order)
        # What pushing every recommendation in time order (``_push``) would leave in the monotonic queues:
        # a recommendation stays when every newer one is strictly lower (``highest``) or higher (``lowest``).
        highest: list[R] = []
        lowest: list[R] = []
        above: float = -math.inf
        below: float = math.inf
        for rec in [history[index] for index in reversed(order)]:
            replicas = rec.replicas
            if replicas > above:
                highest.append(rec)
                above = replicas
            if replicas < below:
                lowest.append(rec)
                below = replicas
        highest.reverse()
        lowest.reverse()
        self.highest: deque[R] = deque(highest)
        self.lowest: deque[R] = deque(lowest if with_behavior else ())
        self.latest = max(times, default=-math.inf)
        """Newest time recorded (every recommendation's ``at`` is <= it)."""
        self.down_cutoff = -math.inf
        self.up_cutoff = -math.inf

    @staticmethod
    def can_index(history: list[R]) -> bool:
        """False when a time is NaN (it has no place in a time order; the scan handles it)."""
        return not any(math.isnan(rec.at) for rec in history)

    def fits(self, history: list[R], *, with_behavior: bool, now: float, up_cutoff: float, down_cutoff: float) -> bool:
        """Whether this index answers exactly for ``history`` at ``now`` with these cutoffs."""
        return (
            self.with_behavior is with_behavior
            and now >= self.latest
            and down_cutoff >= self.down_cutoff
            and up_cutoff >= self.up_cutoff
            and history == self.copy
        )

    def advance(self, up_cutoff: float, down_cutoff: float) -> None:
        """Drop what left the windows and mark what became old (cutoffs must not go backwards: see ``fits``)."""
        self.up_cutoff, self.down_cutoff = up_cutoff, down_cutoff
        highest, lowest = self.highest, self.lowest
        if self.with_behavior:
            while highest and highest[0].at <= down_cutoff:
                highest.popleft()
            while lowest and lowest[0].at <= up_cutoff:
                lowest.popleft()
        else:
            while highest and highest[0].at < down_cutoff:
                highest.popleft()
        old_cutoff = min(up_cutoff, down_cutoff)
        pending, copy, old = self.pending, self.copy, self.old
        while pending and copy[pending[0]].at < old_cutoff:
            heapq.heappush(old, -pending.popleft())

    def window_max(self) -> int | None:
        """Highest replicas inside the scale-down window (None when it is empty)."""
        return self.highest[0].replicas if self.highest else None

    def window_min(self) -> int | None:
        """Lowest replicas inside the scale-up window (None when it is empty; with behavior only)."""
        return self.lowest[0].replicas if self.lowest else None

    def record(self, history: list[R], new: R) -> None:
        """Store ``new`` (whose ``at`` is ``now``) in the highest old slot, else append it; after ``advance``."""
        if self.old:
            index = -heapq.heappop(self.old)
            history[index] = new
            self.copy[index] = new
        else:
            index = len(history)
            history.append(new)
            self.copy.append(new)
        self._push(index, new)
        self.latest = max(self.latest, new.at)

    def _push(self, index: int, rec: R) -> None:
        """Enqueue a recommendation at least as new as everything already queued."""
        self.pending.append(index)
        replicas = rec.replicas
        highest = self.highest
        while highest and highest[-1].replicas <= replicas:
            highest.pop()
        highest.append(rec)
        if self.with_behavior:
            lowest = self.lowest
            while lowest and lowest[-1].replicas >= replicas:
                lowest.pop()
            lowest.append(rec)
