"""Small helpers for building and keying metric samples."""

from __future__ import annotations

import math

import msgspec

from shared.schemas import MetricSample

LabelKey = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, LabelKey]


def label_key(labels: dict[str, str]) -> LabelKey:
    """Labels in a canonical, hashable order."""
    return tuple(sorted(labels.items()))


def series_key(sample: MetricSample) -> SeriesKey:
    """Identity of a time series: its name and its labels."""
    return (sample.name, label_key(sample.labels))


def error_sample(
    name: str,
    *,
    source: str,
    error: str,
    timestamp: float,
    labels: dict[str, str] | None = None,
    unit: str = "",
) -> MetricSample:
    """A sample that says "this could not be measured, and why" (value 0, quality error)."""
    return MetricSample(
        name=name,
        value=0.0,
        timestamp=timestamp,
        unit=unit,
        labels=dict(labels or {}),
        source=source,
        quality="error",
        error=error,
    )


def finite_or_error(sample: MetricSample) -> MetricSample:
    """NaN and infinities cannot travel as JSON numbers: they become error samples."""
    if math.isfinite(sample.value):
        return sample
    return msgspec.structs.replace(sample, value=0.0, quality="error", error=f"non-finite value {sample.value!r}")


def describe_error(exc: BaseException) -> str:
    """A short, human-readable error text for a sample's `error` field."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
