"""The HPA's pod grouping (ready / unready / missing / ignored), ported from ``TestGroupPods``.

Source: kubernetes/kubernetes ``pkg/controller/podautoscaler/replica_calculator_test.go`` TestGroupPods, with
the v1.28 result shape (the older test named today's "unready" set "ignored"; v1.28 ignores only pods being
deleted or Failed).  CPU initialization period 2 minutes, initial readiness delay 10 seconds.
"""

from __future__ import annotations

import pytest

from services.decider.engine.observation import Pod
from services.decider.engine.replicas import PodMetrics, group_pods
from services.decider.engine.spec import ControllerSettings

NOW = 1_700_000_000.0
MIN = 60.0


def settings(window: float = 60.0) -> ControllerSettings:
    return ControllerSettings(
        cpu_initialization_period_seconds=2 * MIN, initial_readiness_delay_seconds=10.0, metric_window_seconds=window
    )


CASES: list[tuple[str, list[Pod], PodMetrics, bool, float, tuple[int, set[str], set[str]]]] = [
    ("void", [], {}, True, 60.0, (0, set(), set())),
    (
        "count in a ready pod - memory",
        [Pod("bentham", phase="Succeeded", ready=None, started_at=None)],
        {"bentham": (1, NOW)},
        False,
        60.0,
        (1, set(), set()),
    ),
    (
        "ignore a pod without ready condition - CPU",
        [Pod("lucretius", phase="Succeeded", ready=None, started_at=NOW)],
        {"lucretius": (1, 0.0)},
        True,
        60.0,
        (0, {"lucretius"}, set()),
    ),
    (
        "count in a ready pod with fresh metrics during initialization period - CPU",
        [Pod("bentham", phase="Succeeded", ready=True, started_at=NOW - MIN, ready_changed_at=NOW - 30)],
        {"bentham": (1, NOW)},
        True,
        30.0,
        (1, set(), set()),
    ),
    (
        "ignore a ready pod without fresh metrics during initialization period - CPU",
        [Pod("bentham", phase="Succeeded", ready=True, started_at=NOW - MIN, ready_changed_at=NOW - 30)],
        {"bentham": (1, NOW)},
        True,
        60.0,
        (0, {"bentham"}, set()),
    ),
    (
        "ignore an unready pod during initialization period - CPU",
        [
            Pod(
                "lucretius",
                phase="Succeeded",
                ready=False,
                started_at=NOW - 10 * MIN,
                ready_changed_at=NOW - 9 * MIN - 54,
            )
        ],
        {"lucretius": (1, 0.0)},
        True,
        60.0,
        (0, {"lucretius"}, set()),
    ),
    (
        "count in a ready pod without fresh metrics after initialization period - CPU",
        [Pod("bentham", phase="Succeeded", ready=True, started_at=NOW - 3 * MIN, ready_changed_at=NOW - 3 * MIN)],
        {"bentham": (1, NOW - 2 * MIN)},
        True,
        60.0,
        (1, set(), set()),
    ),
    (
        "count in an unready pod that was ready after initialization period - CPU",
        [Pod("lucretius", phase="Succeeded", ready=False, started_at=NOW - 10 * MIN, ready_changed_at=NOW - 9 * MIN)],
        {"lucretius": (1, 0.0)},
        True,
        60.0,
        (1, set(), set()),
    ),
    (
        "ignore pod that has never been ready after initialization period - CPU",
        [
            Pod(
                "lucretius",
                phase="Succeeded",
                ready=False,
                started_at=NOW - 10 * MIN,
                ready_changed_at=NOW - 9 * MIN - 50,
            )
        ],
        {"lucretius": (1, 0.0)},
        True,
        60.0,
        (1, set(), set()),
    ),
    (
        "a missing pod",
        [Pod("epicurus", phase="Succeeded", ready=None, started_at=NOW - 3 * MIN)],
        {},
        True,
        60.0,
        (0, set(), {"epicurus"}),
    ),
    (
        "several pods",
        [
            Pod("lucretius", phase="Succeeded", ready=None, started_at=NOW),
            Pod("niccolo", phase="Succeeded", ready=True, started_at=NOW - 3 * MIN, ready_changed_at=NOW - 3 * MIN),
            Pod("epicurus", phase="Succeeded", ready=None, started_at=NOW - 3 * MIN),
        ],
        {"lucretius": (1, 0.0), "niccolo": (1, 0.0)},
        True,
        60.0,
        (1, {"lucretius"}, {"epicurus"}),
    ),
    (
        "pending pods are ignored",
        [Pod("unscheduled", phase="Pending", ready=None, started_at=None)],
        {},
        True,
        60.0,
        (0, {"unscheduled"}, set()),
    ),
]


@pytest.mark.parametrize(("name", "pods", "metrics", "is_cpu", "window", "expected"), CASES, ids=[c[0] for c in CASES])
def test_group_pods(
    name: str,
    pods: list[Pod],
    metrics: PodMetrics,
    is_cpu: bool,
    window: float,
    expected: tuple[int, set[str], set[str]],
) -> None:
    groups = group_pods(pods, metrics, is_cpu=is_cpu, settings=settings(window), now=NOW)
    assert (groups.ready_count, set(groups.unready), set(groups.missing)) == expected


def test_deleted_and_failed_pods_are_ignored_not_counted() -> None:
    pods = [Pod("a", deleting=True), Pod("b", phase="Failed"), Pod("c")]
    groups = group_pods(pods, {"a": (1, NOW), "b": (1, NOW), "c": (1, NOW)}, is_cpu=False, settings=settings(), now=NOW)
    assert (groups.ready_count, set(groups.ignored)) == (1, {"a", "b"})
