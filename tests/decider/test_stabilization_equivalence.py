"""The indexed stabilization (``services.decider.engine.window``) answers exactly as the HPA's scan does.

The reference below is the scan as it stood before the index (a verbatim copy of kubernetes' loops as ported):
every call of ``stabilize_recommendation`` / ``stabilize_with_behavior`` must return the same value and leave
``HpaState.recommendations`` holding the same recommendations in the same order as the reference does on a
state of its own.  The call sequences are random but seeded (so a failure reproduces): windows of every size
(0, equal up and down windows, changed between calls), repeated timestamps, clock jumps longer than any window,
a clock that goes back, values equal to stored ones, histories filled by hand (as tests and a restore from the KV
bucket do), the list changed outside these functions (as a firing rule appends to it), and NaN times.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest

from services.decider.engine.normalize import (
    HpaState,
    Recommendation,
    normalize_with_behavior,
    normalize_without_behavior,
    stabilize_recommendation,
    stabilize_with_behavior,
)
from services.decider.engine.spec import Behavior, ScalingRules

NOW = 1_700_000_000.0
SEQUENCES = 3_000
STEPS = 40
WINDOWS = (0, 0, 1, 2, 3, 5, 10, 60, 300, 2.5, -1)


# -- the reference: the scan, as it was before the index ---------------------------------------------


def reference_stabilize_recommendation(history: list[Recommendation], desired: int, now: float, window: float) -> int:
    highest = desired
    old_index = -1
    cutoff = now - window
    for index, rec in enumerate(history):
        if rec.at < cutoff:
            old_index = index
        elif rec.replicas > highest:
            highest = rec.replicas
    if old_index >= 0:
        history[old_index] = Recommendation(desired, now)
    else:
        history.append(Recommendation(desired, now))
    return highest


def reference_stabilize_with_behavior(
    history: list[Recommendation], behavior: Behavior, current: int, desired: int, now: float
) -> tuple[int, str]:
    up_recommendation = desired
    up_cutoff = now - behavior.scale_up.stabilization_window_seconds
    down_recommendation = desired
    down_cutoff = now - behavior.scale_down.stabilization_window_seconds
    old_cutoff = min(up_cutoff, down_cutoff)
    old_index = -1
    for index, rec in enumerate(history):
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
        history[old_index] = Recommendation(desired, now)
    else:
        history.append(Recommendation(desired, now))
    reason = "ScaleUpStabilized" if desired >= current else "ScaleDownStabilized"
    return recommendation, reason


# -- random call sequences ----------------------------------------------------------------------------


def behavior_of(up_window: float, down_window: float) -> Behavior:
    return Behavior(
        scale_up=ScalingRules(int(up_window), "Max", ()),
        scale_down=ScalingRules(int(down_window), "Max", ()),
    )


def contents(history: list[Recommendation]) -> list[tuple[int, str]]:
    """Comparable contents (a NaN time compares equal to a NaN time here)."""
    return [(rec.replicas, repr(rec.at)) for rec in history]


def random_history(rng: random.Random, now: float) -> list[Recommendation]:
    """A history filled by hand: times around ``now`` (some equal, some in the future), values repeating."""
    size = rng.choice((0, 0, 1, 2, 5, 12, 40))
    history = [
        Recommendation(rng.randint(1, 6), now - rng.choice((400, 300, 61, 60, 10, 3, 1, 1, 0))) for _ in range(size)
    ]
    if size and rng.random() < 0.1:
        history[rng.randrange(size)] = Recommendation(rng.randint(1, 6), now + rng.choice((0.5, 2, 30)))
    if size and rng.random() < 0.03:
        history[rng.randrange(size)] = Recommendation(rng.randint(1, 6), math.nan)
    return history


@dataclass
class Sequence:
    """One random call sequence over two states: the indexed one and the reference's list."""

    rng: random.Random
    now: float
    state: HpaState = field(default_factory=HpaState)
    reference: list[Recommendation] = field(default_factory=list)
    with_behavior: bool = False
    up_window: float = 0
    down_window: float = 300
    indexed_calls: int = 0

    def start(self) -> None:
        history = random_history(self.rng, self.now)
        self.state = HpaState(recommendations=list(history), initialized=True)
        self.reference = list(history)
        self.with_behavior = self.rng.random() < 0.5
        self.pick_windows()

    def pick_windows(self) -> None:
        self.down_window = self.rng.choice(WINDOWS)
        self.up_window = self.down_window if self.rng.random() < 0.3 else self.rng.choice(WINDOWS)
        if self.with_behavior:
            self.up_window, self.down_window = int(self.up_window), int(self.down_window)

    def disturb(self) -> None:
        """Sometimes: change policy, move the clock oddly, or change the list outside the stabilization."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.05:
            self.pick_windows()
        elif roll < 0.08:
            self.with_behavior = not self.with_behavior
            self.pick_windows()
        elif roll < 0.10:
            rec = Recommendation(rng.randint(1, 6), self.now)  # what a firing rule does
            self.state.recommendations.append(rec)
            self.reference.append(rec)
        elif roll < 0.11 and self.reference:
            index = rng.randrange(len(self.reference))
            rec = Recommendation(rng.randint(1, 6), self.now - rng.choice((0, 1, 100)))
            self.state.recommendations[index] = rec
            self.reference[index] = rec
        elif roll < 0.12 and self.reference:
            index = rng.randrange(len(self.reference))
            del self.state.recommendations[index]
            del self.reference[index]
        elif roll < 0.13:
            # restored from the KV bucket: a new state with equal (not identical) recommendations, no index
            self.state = HpaState(
                recommendations=[Recommendation(r.replicas, r.at) for r in self.reference], initialized=True
            )
        elif roll < 0.14:
            self.state.recommendations = list(self.state.recommendations)
        elif roll < 0.16:
            self.now -= rng.choice((1, 5, 0.5))

    def step(self) -> None:
        rng = self.rng
        self.disturb()
        self.disturb()  # twice: some changes come together (a policy change while the clock goes back)
        self.now += rng.choice((0, 0, 1, 1, 1, 1, 2, 0.25, 7, 61, 400))
        desired = rng.randint(1, 6)
        state, reference = self.state, self.reference
        if self.with_behavior:
            behavior = behavior_of(self.up_window, self.down_window)
            current = rng.randint(1, 6)
            if rng.random() < 0.5:
                got = stabilize_with_behavior(state, behavior, current, desired, self.now)
            else:
                normalized = normalize_with_behavior(state, behavior, current, desired, 1, 100, self.now)
                got = (normalized.stabilized, normalized.able_to_scale)
                if got[0] == desired:  # normalize reports ReadyForNewScale where stabilize gives its reason
                    got = (got[0], "ScaleUpStabilized" if desired >= current else "ScaleDownStabilized")
            expected = reference_stabilize_with_behavior(reference, behavior, current, desired, self.now)
        else:
            if rng.random() < 0.5:
                got_plain = stabilize_recommendation(state, desired, self.now, self.down_window)
            else:
                got_plain = normalize_without_behavior(
                    state, rng.randint(1, 6), desired, 1, 100, self.now, self.down_window
                ).stabilized
            got, expected = (
                (got_plain, ""),
                (reference_stabilize_recommendation(reference, desired, self.now, self.down_window), ""),
            )
        assert got == expected
        assert contents(state.recommendations) == contents(reference)
        if state.window is not None:
            self.indexed_calls += 1


@pytest.mark.parametrize("seed", range(6))
def test_indexed_stabilization_equals_the_scan_on_random_call_sequences(seed: int) -> None:
    """Thousands of random sequences: same returned values and same stored list after every call."""
    rng = random.Random(seed)
    calls = indexed = 0
    for number in range(SEQUENCES // 6):
        sequence = Sequence(rng, NOW + rng.choice((0, 0.5, 1e6)))
        sequence.start()
        for step in range(STEPS):
            try:
                sequence.step()
            except AssertionError as error:
                raise AssertionError(f"seed {seed}, sequence {number}, step {step}") from error
        calls += STEPS
        indexed += sequence.indexed_calls
    assert indexed > calls // 2, "most calls must be answered by the index, not by the scan fallback"


def test_a_steady_target_keeps_one_index_across_ticks() -> None:
    """In steady state (1 s ticks, fixed windows) the index is built once and then only updated."""
    state = HpaState(recommendations=[Recommendation(4, NOW - age) for age in range(300, 0, -1)], initialized=True)
    behavior = behavior_of(0, 300)
    stabilize_with_behavior(state, behavior, 4, 3, NOW)
    index = state.window
    assert index is not None
    for tick in range(1, 600):
        stabilize_with_behavior(state, behavior, 4, 3 + tick % 3, NOW + tick)
        assert state.window is index
    assert len(state.recommendations) == 301


def test_an_append_outside_the_stabilization_rebuilds_the_index() -> None:
    """A firing rule appends to the history directly; the next stabilization sees it (it is the window's max)."""
    state = HpaState(recommendations=[Recommendation(2, NOW - 1)], initialized=True)
    assert stabilize_recommendation(state, 2, NOW, 300) == 2
    state.recommendations.append(Recommendation(9, NOW))
    assert stabilize_recommendation(state, 2, NOW + 1, 300) == 9
    assert [r.replicas for r in state.recommendations] == [2, 2, 9, 2]


def test_a_clock_gone_back_falls_back_to_the_scan() -> None:
    """A recorded time newer than ``now`` breaks the index's time order: the scan answers instead."""
    state = HpaState(recommendations=[Recommendation(5, NOW + 10), Recommendation(1, NOW - 400)], initialized=True)
    assert stabilize_recommendation(state, 2, NOW, 300) == 5
    assert state.window is None
    assert [(r.replicas, r.at) for r in state.recommendations] == [(5, NOW + 10), (2, NOW)]
