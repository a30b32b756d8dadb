"""Failures are reported inside the snapshot: recent values as `stale`, older or missing ones as `error`."""

from __future__ import annotations

import math

from services.collector.quality import SourceQuality
from shared.schemas import MetricSample


def sample(value: float, at: float, pod: str = "web-1", quality: str = "ok", error: str = "") -> MetricSample:
    return MetricSample(
        name="rps",
        value=value,
        timestamp=at,
        labels={"pod": pod},
        source="scrape",
        quality=quality,  # type: ignore[arg-type]
        error=error,
    )


def test_good_samples_pass_through_unchanged() -> None:
    quality = SourceQuality("scrape", ("rps",), max_stale_seconds=10)
    assert quality.on_success([sample(3.0, 100.0)], now=100.0) == [sample(3.0, 100.0)]


def test_a_failed_collection_reports_the_last_good_value_as_stale_with_the_error() -> None:
    quality = SourceQuality("scrape", ("rps",), max_stale_seconds=10)
    quality.on_success([sample(3.0, 100.0)], now=100.0)
    [reported] = quality.on_failure("timed out", now=105.0)
    assert (reported.value, reported.quality, reported.error, reported.timestamp) == (3.0, "stale", "timed out", 100.0)


def test_a_value_older_than_max_stale_becomes_an_error_sample_per_metric() -> None:
    quality = SourceQuality("scrape", ("rps", "inflight"), max_stale_seconds=10)
    quality.on_success([sample(3.0, 100.0)], now=100.0)
    reported = quality.on_failure("connection refused", now=111.0)
    assert [(s.name, s.quality, s.error, s.value) for s in reported] == [
        ("rps", "error", "connection refused", 0.0),
        ("inflight", "error", "connection refused", 0.0),
    ]


def test_a_failure_before_any_success_is_an_error_for_every_declared_metric() -> None:
    quality = SourceQuality("scrape", ("rps",), max_stale_seconds=10)
    [reported] = quality.on_failure("HTTP 500", now=1.0)
    assert (reported.name, reported.quality, reported.source, reported.timestamp) == ("rps", "error", "scrape", 1.0)


def test_a_per_pod_error_falls_back_to_that_pods_recent_value() -> None:
    quality = SourceQuality("scrape", ("rps",), max_stale_seconds=10)
    quality.on_success([sample(3.0, 100.0, "web-1"), sample(4.0, 100.0, "web-2")], now=100.0)
    reported = quality.on_success(
        [sample(5.0, 101.0, "web-1"), sample(0.0, 101.0, "web-2", quality="error", error="refused")], now=101.0
    )
    assert [(s.labels["pod"], s.value, s.quality) for s in reported] == [("web-1", 5.0, "ok"), ("web-2", 4.0, "stale")]
    # The stale fallback keeps its original time: 12 s after it was measured it is an error.
    later = quality.on_success([sample(0.0, 112.0, "web-2", quality="error", error="refused")], now=112.0)
    assert [(s.labels["pod"], s.quality) for s in later] == [("web-2", "error")]


def test_non_finite_values_become_error_samples_because_json_cannot_carry_them() -> None:
    quality = SourceQuality("scrape", ("rps",), max_stale_seconds=10)
    [reported] = quality.on_success([sample(math.nan, 1.0)], now=1.0)
    assert reported.quality == "error" and reported.value == 0.0 and "non-finite" in reported.error
