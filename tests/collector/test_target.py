"""A target's state: latest samples per source, pushed samples, thresholds and snapshots."""

from __future__ import annotations

import pytest

from services.collector.config import PushConfig, ThresholdConfig
from services.collector.target import PushLimitExceeded, TargetState, ThresholdWatch
from shared.clock import ManualClock
from shared.schemas import MetricPush, MetricSample


def rps(value: float, pod: str = "web-1", quality: str = "ok") -> MetricSample:
    return MetricSample(name="rps", value=value, labels={"pod": pod}, quality=quality)  # type: ignore[arg-type]


def test_crossing_above_fires_once_until_the_series_falls_back() -> None:
    watch = ThresholdWatch((ThresholdConfig(metric="rps", above=10),))
    assert [watch.crossed(rps(v)) for v in (5, 11, 12, 9, 15)] == [False, True, False, False, True]


def test_crossing_below_fires_on_the_way_down() -> None:
    watch = ThresholdWatch((ThresholdConfig(metric="rps", below=2),))
    assert [watch.crossed(rps(v)) for v in (5, 1, 0, 3, 1)] == [False, True, False, False, True]


def test_thresholds_are_per_series_and_ignore_other_metrics_and_bad_samples() -> None:
    watch = ThresholdWatch((ThresholdConfig(metric="rps", above=10),))
    assert watch.crossed(rps(20, "web-1"))
    assert watch.crossed(rps(20, "web-2"))
    assert not watch.crossed(MetricSample(name="other", value=99))
    assert not watch.crossed(rps(50, "web-3", quality="error"))


def test_a_pushed_sample_crossing_a_threshold_marks_the_next_snapshot_urgent() -> None:
    clock = ManualClock()
    state = TargetState("web", (ThresholdConfig(metric="queue", above=100),), PushConfig(), configured=True)
    assert not state.push(MetricPush(target="web", name="queue", value=50), clock.now())
    assert state.push(MetricPush(target="web", name="queue", value=500), clock.now())
    snapshot = state.snapshot(clock.now(), "c1")
    assert snapshot.urgent and snapshot.sequence == 1
    assert not state.snapshot(clock.now(), "c1").urgent


def test_pushed_samples_keep_the_latest_value_per_series_and_the_senders_timestamp() -> None:
    clock = ManualClock(1000.0)
    state = TargetState("web", (), PushConfig(), configured=False)
    state.push(MetricPush(target="web", name="queue", value=1, labels={"pod": "a"}), clock.now())
    state.push(MetricPush(target="web", name="queue", value=2, labels={"pod": "a"}, timestamp=999.5), clock.now())
    state.push(MetricPush(target="web", name="queue", value=7, labels={"pod": "b"}), clock.now())
    samples = sorted(state.snapshot(clock.now(), "c1").samples, key=lambda s: s.labels["pod"])
    assert [(s.labels["pod"], s.value, s.timestamp, s.source) for s in samples] == [
        ("a", 2.0, 999.5, "push"),
        ("b", 7.0, 1000.0, "push"),
    ]


def test_pushed_samples_turn_stale_then_expire() -> None:
    clock = ManualClock()
    state = TargetState("web", (), PushConfig(stale_after_seconds=5, expire_after_seconds=20), configured=False)
    state.push(MetricPush(target="web", name="queue", value=3), clock.now())
    clock.advance(6)
    [stale] = state.samples(clock.now())
    assert stale.quality == "stale" and "not pushed for 6.0s" in stale.error
    clock.advance(15)
    state.expire_pushes(clock.now())
    assert state.empty and state.samples(clock.now()) == []


def test_a_target_holds_at_most_the_configured_number_of_pushed_series() -> None:
    state = TargetState("web", (), PushConfig(max_series_per_target=2), configured=False)
    state.push(MetricPush(target="web", name="a", value=1), 0.0)
    state.push(MetricPush(target="web", name="b", value=1), 0.0)
    state.push(MetricPush(target="web", name="b", value=2), 0.0)  # an existing series may be updated
    with pytest.raises(PushLimitExceeded):
        state.push(MetricPush(target="web", name="c", value=1), 0.0)


def test_source_samples_replace_that_sources_previous_set() -> None:
    state = TargetState("web", (), PushConfig(), configured=True)
    state.update_source("scrape", [rps(1, "web-1"), rps(2, "web-2")])
    state.update_source("scrape", [rps(3, "web-1")])
    state.update_source("process", [MetricSample(name="cpu", value=0.5, labels={"pod": "web-1"})])
    names = sorted((s.name, s.value) for s in state.samples(0.0))
    assert names == [("cpu", 0.5), ("rps", 3.0)]
