"""What the collector knows about one target right now, and the snapshots built from it.

Samples arrive from the target's sources (a whole set per collection) and from applications'
pushes (one series at a time).  A sample crossing one of the target's thresholds marks the
next snapshot urgent.
"""

from __future__ import annotations

from services.collector.config import PushConfig, ThresholdConfig
from services.collector.pushes import PushLike
from services.collector.samples import SeriesKey, series_key
from shared.schemas import MetricSample, MetricSnapshot


class ThresholdWatch:
    """Detects samples crossing a target's thresholds (per series, against its previous value)."""

    def __init__(self, thresholds: tuple[ThresholdConfig, ...]) -> None:
        self._by_metric: dict[str, list[ThresholdConfig]] = {}
        for threshold in thresholds:
            self._by_metric.setdefault(threshold.metric, []).append(threshold)
        self._previous: dict[SeriesKey, float] = {}

    def watches(self, name: str) -> bool:
        return name in self._by_metric

    def crossed(self, sample: MetricSample) -> bool:
        """True when this sample crosses `above` upwards or `below` downwards."""
        thresholds = self._by_metric.get(sample.name)
        if not thresholds or sample.quality != "ok":
            return False
        key = series_key(sample)
        previous = self._previous.get(key)
        self._previous[key] = sample.value
        for threshold in thresholds:
            if (
                threshold.above is not None
                and sample.value > threshold.above
                and (previous is None or previous <= threshold.above)
            ):
                return True
            if (
                threshold.below is not None
                and sample.value < threshold.below
                and (previous is None or previous >= threshold.below)
            ):
                return True
        return False


class PushLimitExceeded(Exception):
    """A target already holds the configured maximum of pushed series."""


class TargetState:
    """Latest samples of one target, by source, plus pushed samples; builds its snapshots."""

    def __init__(self, name: str, thresholds: tuple[ThresholdConfig, ...], push: PushConfig, *, configured: bool):
        self.name = name
        self.configured = configured
        self._push = push
        self._watch = ThresholdWatch(thresholds)
        self._by_source: dict[str, tuple[MetricSample, ...]] = {}
        self._pushed: dict[SeriesKey, tuple[PushLike, float]] = {}
        self._sequence = 0
        self.dirty = False
        """New pushed data since the last snapshot."""
        self.urgent = False
        """A threshold was crossed since the last snapshot."""

    def update_source(self, source: str, samples: list[MetricSample]) -> bool:
        """Replace one source's samples; True when one crossed a threshold."""
        self._by_source[source] = tuple(samples)
        crossed = False
        for sample in samples:
            crossed = self._watch.crossed(sample) or crossed
        self.urgent = self.urgent or crossed
        return crossed

    def push(self, message: PushLike, received_at: float) -> bool:
        """Keep a pushed sample (the latest per series); True when it crossed a threshold.

        The hot path of ingestion: the sample is kept as it arrived and becomes a MetricSample
        only when a snapshot is built.
        """
        labels = message.labels
        key = (message.name, tuple(sorted(labels.items())) if len(labels) > 1 else tuple(labels.items()))
        pushed = self._pushed
        if key not in pushed and len(pushed) >= self._push.max_series_per_target:
            raise PushLimitExceeded(
                f"target {self.name!r} already holds {self._push.max_series_per_target} pushed series"
            )
        pushed[key] = (message, received_at)
        self.dirty = True
        if not self._watch.watches(message.name):
            return False
        crossed = self._watch.crossed(_pushed_sample(message, received_at))
        self.urgent = self.urgent or crossed
        return crossed

    def expire_pushes(self, now: float) -> None:
        """Drop pushed series not refreshed within `expire_after_seconds`."""
        limit = self._push.expire_after_seconds
        for key in [key for key, (_, received) in self._pushed.items() if now - received > limit]:
            del self._pushed[key]

    @property
    def empty(self) -> bool:
        return not self._pushed and not any(self._by_source.values())

    def samples(self, now: float) -> list[MetricSample]:
        """Every current sample; pushed samples not refreshed recently are marked stale."""
        result = [sample for samples in self._by_source.values() for sample in samples]
        stale_after = self._push.stale_after_seconds
        for message, received in self._pushed.values():
            age = now - received
            if age > stale_after:
                result.append(_pushed_sample(message, received, quality="stale", error=f"not pushed for {age:.1f}s"))
            else:
                result.append(_pushed_sample(message, received))
        return result

    def snapshot(self, now: float, collector: str) -> MetricSnapshot:
        """The next snapshot of this target; clears the dirty and urgent marks."""
        self._sequence += 1
        snapshot = MetricSnapshot(
            target=self.name,
            collected_at=now,
            samples=tuple(self.samples(now)),
            collector=collector,
            sequence=self._sequence,
            urgent=self.urgent,
        )
        self.dirty = False
        self.urgent = False
        return snapshot


def _pushed_sample(message: PushLike, received_at: float, quality: str = "ok", error: str = "") -> MetricSample:
    return MetricSample(
        name=message.name,
        value=message.value,
        timestamp=message.timestamp or received_at,
        unit=message.unit,
        labels=message.labels,
        source="push",
        quality=quality,  # type: ignore[arg-type]
        error=error,
    )
