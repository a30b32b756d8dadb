"""Quality of a source's samples over time: good values, stale fallbacks and errors.

After a failure, the decider is better served by the last good value marked ``stale`` (with its
original timestamp and the error text) than by nothing; once that value is older than
``max_stale_seconds`` it is reported as ``error`` instead.
"""

from __future__ import annotations

import msgspec

from services.collector.samples import SeriesKey, error_sample, finite_or_error, series_key
from shared.schemas import MetricSample


class SourceQuality:
    """Remembers a source's last good samples and turns failures into stale or error samples."""

    def __init__(self, source: str, metric_names: tuple[str, ...], max_stale_seconds: float) -> None:
        self._source = source
        self._metric_names = metric_names
        self._max_stale = max_stale_seconds
        self._last_good: dict[SeriesKey, MetricSample] = {}

    def _stale(self, key: SeriesKey, error: str, now: float) -> MetricSample | None:
        good = self._last_good.get(key)
        if good is None or now - good.timestamp > self._max_stale:
            return None
        return msgspec.structs.replace(good, quality="stale", error=error)

    def on_success(self, samples: list[MetricSample], now: float) -> list[MetricSample]:
        """A collection returned: keep good samples, replace per-series errors by stale values if recent."""
        result: list[MetricSample] = []
        last_good: dict[SeriesKey, MetricSample] = {}
        for raw in samples:
            sample = finite_or_error(raw)
            if not sample.source:
                sample = msgspec.structs.replace(sample, source=self._source)
            key = series_key(sample)
            if sample.quality == "ok":
                last_good[key] = sample
                result.append(sample)
                continue
            stale = self._stale(key, sample.error, now)
            if stale is not None:
                last_good[key] = self._last_good[key]
                result.append(stale)
            else:
                result.append(sample)
        self._last_good = last_good
        return result

    def on_failure(self, error: str, now: float) -> list[MetricSample]:
        """The whole collection failed: recent values become stale, the rest one error per metric."""
        result: list[MetricSample] = []
        for key in list(self._last_good):
            stale = self._stale(key, error, now)
            if stale is None:
                del self._last_good[key]
            else:
                result.append(stale)
        covered = {sample.name for sample in result}
        result.extend(
            error_sample(name, source=self._source, error=error, timestamp=now)
            for name in self._metric_names
            if name not in covered
        )
        return result
