"""Reduce a metric's samples in an observation to one number (for rules, activation and panic mode)."""

from __future__ import annotations

import math

from services.decider.engine.observation import Observation
from services.decider.engine.spec import Aggregate, Selector


def aggregate(observation: Observation, metric: str, how: Aggregate, selector: Selector | None = None) -> float | None:
    """``how`` over the good samples of ``metric``; None when there are none."""
    values: list[float] = []
    for sample in observation.samples_named(metric):
        if sample.quality != "ok" or not math.isfinite(sample.value):
            continue
        if selector is not None and not selector.matches(sample.labels):
            continue
        values.append(sample.value)
    if not values:
        return None
    if how == "sum":
        return math.fsum(values)
    if how == "avg":
        return math.fsum(values) / len(values)
    if how == "max":
        return max(values)
    if how == "min":
        return min(values)
    return values[-1]


def has_failed_samples(observation: Observation, metrics: frozenset[str]) -> bool:
    """True when a sample of one of ``metrics`` carries quality error or stale."""
    return observation.has_failed(metrics)


def newest_age(observation: Observation, metric: str) -> float:
    """Seconds since the newest good sample of ``metric`` (0 when there is none)."""
    newest = 0.0
    for sample in observation.samples_named(metric):
        if sample.quality == "ok":
            newest = max(newest, sample.timestamp or observation.samples_at)
    return max(0.0, observation.now - newest) if newest else 0.0
