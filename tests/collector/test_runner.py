"""The source runner: retries within an interval, timeouts per attempt, quality of what it hands over.

The sources here are small in-test classes that fail on purpose; they exercise the runner's
policy, which does not depend on what a source measures (the real sources have their own tests
against real servers).
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from services.collector.config import ProcessSourceConfig
from services.collector.metrics import CollectorMetrics
from services.collector.runner import SourceRunner
from shared.clock import ManualClock
from shared.schemas import MetricSample


class FlakySource:
    """Fails (raises, or hangs) for the first ``failures`` collections, then reports one sample."""

    metric_names = ("load",)

    def __init__(self, failures: int, *, hang: bool = False, clock: ManualClock | None = None) -> None:
        self.clock = clock or ManualClock(1.0)
        self.failures = failures
        self.hang = hang
        self.calls = 0

    @property
    def name(self) -> str:
        return "flaky"

    async def collect(self) -> list[MetricSample]:
        self.calls += 1
        if self.calls <= self.failures:
            if self.hang:
                await asyncio.sleep(30)
            raise ConnectionError("refused")
        return [MetricSample(name="load", value=float(self.calls), timestamp=self.clock.now())]

    async def close(self) -> None:
        return None


def runner_for(source: FlakySource, **config: object) -> tuple[SourceRunner, CollectorMetrics, ManualClock]:
    settings = msgspec.convert({"type": "process", "name": "flaky", **config}, ProcessSourceConfig)
    metrics = CollectorMetrics(CollectorRegistry())
    clock = source.clock
    runner = SourceRunner(
        target="web", source=source, config=settings, sink=lambda *_: None, clock=clock, metrics=metrics
    )
    return runner, metrics, clock


async def test_a_failed_attempt_is_retried_within_the_same_collection() -> None:
    source = FlakySource(failures=1)
    runner, metrics, _ = runner_for(source, retry={"attempts": 2, "backoff_seconds": 0})
    [sample] = await runner.collect_once()
    assert (sample.value, sample.quality, sample.source, source.calls) == (2.0, "ok", "flaky", 2)
    assert metrics.collections.labels("web", "flaky", "ok")._value.get() == 1


async def test_when_every_attempt_fails_the_error_text_and_a_counter_report_it() -> None:
    source = FlakySource(failures=5, clock=ManualClock(100.0))
    runner, metrics, _ = runner_for(source, retry={"attempts": 3, "backoff_seconds": 0})
    [sample] = await runner.collect_once()
    assert (sample.name, sample.quality, sample.error, sample.timestamp) == (
        "load",
        "error",
        "ConnectionError: refused",
        100.0,
    )
    assert source.calls == 3
    assert metrics.source_errors.labels("web", "flaky", "collection")._value.get() == 1


async def test_each_attempt_is_cut_at_the_timeout() -> None:
    source = FlakySource(failures=2, hang=True)
    runner, _, _ = runner_for(source, timeout_seconds=0.05, retry={"attempts": 2, "backoff_seconds": 0})
    [sample] = await runner.collect_once()
    assert sample.quality == "error" and sample.error == "timed out after 0.05s"


async def test_after_a_success_a_failure_reports_the_last_value_as_stale_until_max_stale() -> None:
    source = FlakySource(failures=0, clock=ManualClock(100.0))
    runner, _, clock = runner_for(source, max_stale_seconds=5)
    await runner.collect_once()
    source.failures = 10  # from now on every call fails
    clock.advance(3)
    [stale] = await runner.collect_once()
    assert (stale.value, stale.quality, stale.timestamp, stale.error) == (
        1.0,
        "stale",
        100.0,
        "ConnectionError: refused",
    )
    clock.advance(3)  # the last good value is now 6 s old
    [expired] = await runner.collect_once()
    assert (expired.value, expired.quality) == (0.0, "error")


class HalfBrokenSource:
    """Reports one good sample and one per-pod error sample."""

    metric_names = ("load",)

    @property
    def name(self) -> str:
        return "half"

    async def collect(self) -> list[MetricSample]:
        return [
            MetricSample(name="load", value=1.0, labels={"pod": "a"}),
            MetricSample(name="load", value=0.0, labels={"pod": "b"}, quality="error", error="HTTP 500"),
        ]

    async def close(self) -> None:
        return None


async def test_per_sample_errors_are_counted_without_failing_the_collection() -> None:
    settings = msgspec.convert({"type": "process", "name": "half"}, ProcessSourceConfig)
    metrics = CollectorMetrics(CollectorRegistry())
    runner = SourceRunner(
        target="web",
        source=HalfBrokenSource(),
        config=settings,
        sink=lambda *_: None,
        clock=ManualClock(),
        metrics=metrics,
    )
    samples = await runner.collect_once()
    assert [(s.labels["pod"], s.quality) for s in samples] == [("a", "ok"), ("b", "error")]
    assert metrics.source_errors.labels("web", "half", "sample")._value.get() == 1
    assert metrics.collections.labels("web", "half", "ok")._value.get() == 1


async def test_an_ongoing_failure_is_logged_once_and_the_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    source = FlakySource(failures=3)
    runner, _, _ = runner_for(source)
    with caplog.at_level(logging.INFO, logger="services.collector.runner"):
        for _ in range(4):
            await runner.collect_once()
    assert [record.getMessage() for record in caplog.records] == ["source failed", "source recovered"]
