"""Counters become per-second rates, series by series."""

from __future__ import annotations

import pytest

from services.collector.rates import CounterRates


def test_first_observation_of_a_series_has_no_rate_yet() -> None:
    rates = CounterRates()
    assert rates.observe("pod-a", 100.0, at=10.0) is None


def test_rate_is_the_increase_per_second_between_the_last_two_observations() -> None:
    rates = CounterRates()
    rates.observe("pod-a", 100.0, at=10.0)
    assert rates.observe("pod-a", 130.0, at=12.0) == pytest.approx(15.0)
    assert rates.observe("pod-a", 131.0, at=13.0) == pytest.approx(1.0)


def test_series_are_independent() -> None:
    rates = CounterRates()
    rates.observe("pod-a", 0.0, at=0.0)
    rates.observe("pod-b", 1000.0, at=0.0)
    assert rates.observe("pod-a", 10.0, at=1.0) == pytest.approx(10.0)
    assert rates.observe("pod-b", 1001.0, at=1.0) == pytest.approx(1.0)


def test_a_counter_that_goes_down_was_reset_and_counts_from_zero() -> None:
    rates = CounterRates()
    rates.observe("pod-a", 500.0, at=0.0)
    assert rates.observe("pod-a", 20.0, at=2.0) == pytest.approx(10.0)


def test_a_repeated_or_older_observation_yields_nothing() -> None:
    rates = CounterRates()
    rates.observe("pod-a", 5.0, at=3.0)
    assert rates.observe("pod-a", 9.0, at=3.0) is None
    assert rates.observe("pod-a", 9.0, at=2.0) is None


def test_a_window_averages_over_the_oldest_point_at_least_a_window_old() -> None:
    rates = CounterRates(window_seconds=3.0)
    rates.observe("pod-a", 0.0, at=0.0)
    assert rates.observe("pod-a", 10.0, at=1.0) == pytest.approx(10.0)
    assert rates.observe("pod-a", 10.0, at=2.0) == pytest.approx(5.0)
    assert rates.observe("pod-a", 10.0, at=3.0) == pytest.approx(10.0 / 3.0)
    # At t=5 the point at t=2 is the newest that is at least 3 s old.
    assert rates.observe("pod-a", 40.0, at=5.0) == pytest.approx(30.0 / 3.0)


def test_forget_unseen_drops_series_that_were_not_observed_since_the_last_call() -> None:
    rates = CounterRates()
    rates.observe("pod-a", 1.0, at=0.0)
    rates.observe("pod-b", 1.0, at=0.0)
    rates.forget_unseen()
    rates.observe("pod-a", 2.0, at=1.0)
    rates.forget_unseen()
    assert rates.observe("pod-b", 5.0, at=2.0) is None  # pod-b starts over
    assert rates.observe("pod-a", 4.0, at=2.0) == pytest.approx(2.0)
