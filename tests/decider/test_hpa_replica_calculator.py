"""The HPA's replica calculator tests, ported as one table.

Source: kubernetes/kubernetes ``pkg/controller/podautoscaler/replica_calculator_test.go``; each case names the
Go test it reproduces.  The Go harness's conventions are kept: pods ``test-pod-<i>`` with two containers
(each reporting ``level`` milli-units and requesting ``request``), Ready condition True unless listed, start
time zero unless "hot" (now) or "cool" (3 minutes ago), metric samples stamped at time zero with a one-minute
window; tolerance 0.1, CPU initialization period 2 minutes, initial readiness delay 10 seconds.
Metric levels are milli-units, as in the Go tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from services.decider.engine.observation import Pod
from services.decider.engine.replicas import (
    MetricUnavailable,
    PodMetrics,
    per_pod_replicas,
    plain_metric_replicas,
    resource_replicas,
    usage_ratio_replicas,
)
from services.decider.engine.spec import ControllerSettings, Tolerance

NOW = 1_000_000_000.0
ZERO_TIME = 0.0
"""Go's zero time.Time, far in the past of NOW."""
SETTINGS = ControllerSettings(
    tolerance=0.1,
    cpu_initialization_period_seconds=120.0,
    initial_readiness_delay_seconds=10.0,
    metric_window_seconds=60.0,
)
TOLERANCE = Tolerance(0.1, 0.1)
CONTAINERS = 2


def start(kind: str) -> float:
    return {"hot": NOW, "cool": NOW - 180.0, "zero": ZERO_TIME}[kind]


@dataclass(frozen=True)
class Case:
    source: str
    kind: str
    """resource (GetResourceReplicas), pods, object, object_per_pod, external, external_per_pod."""
    current: int
    expected: int | None
    levels: list[int]
    target: int
    expected_usage: int | None = None
    expected_raw: int | None = None
    requests: list[float] = field(default_factory=list)
    """Per-container CPU request in cores, per pod."""
    readiness: list[bool] = field(default_factory=list)
    starts: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    deleting: list[bool] = field(default_factory=list)
    pod_names: list[str] = field(default_factory=list)
    error: str = ""


def pods_of(case: Case) -> list[Pod]:
    count = max(case.current, len(case.phases))
    return [
        Pod(
            name=f"test-pod-{i}",
            phase=case.phases[i] if case.phases else "Running",
            ready=case.readiness[i] if i < len(case.readiness) else True,
            started_at=start(case.starts[i]) if case.starts else ZERO_TIME,
            ready_changed_at=ZERO_TIME,
            deleting=case.deleting[i] if case.deleting else False,
        )
        for i in range(count)
    ]


def per_pod_levels(case: Case, per_pod_factor: int) -> PodMetrics:
    names = [case.pod_names[i] if i < len(case.pod_names) else f"test-pod-{i}" for i in range(len(case.levels))]
    return {name: (level * per_pod_factor, ZERO_TIME) for name, level in zip(names, case.levels, strict=True)}


def run(case: Case) -> tuple[int, int, int | None]:
    pods = pods_of(case)
    if case.kind == "resource":
        requests = {f"test-pod-{i}": round(r * 1000) * CONTAINERS for i, r in enumerate(case.requests)}
        replicas, utilization, raw = resource_replicas(
            per_pod_levels(case, CONTAINERS),
            requests,
            pods,
            case.current,
            case.target,
            is_cpu=True,
            tolerance=TOLERANCE,
            settings=SETTINGS,
            now=NOW,
        )
        return replicas, utilization, raw
    if case.kind == "pods":
        replicas, usage = plain_metric_replicas(
            per_pod_levels(case, 1),
            pods,
            case.current,
            case.target,
            is_cpu=False,
            tolerance=TOLERANCE,
            settings=SETTINGS,
            now=NOW,
        )
        return replicas, usage, None
    total = sum(case.levels)
    if case.kind in ("object", "external"):
        ready = sum(1 for p in pods if p.phase == "Running" and p.ready)
        replicas = usage_ratio_replicas(case.current, total / case.target, len(pods), ready, TOLERANCE)
        return replicas, total, None
    replicas, usage = per_pod_replicas(case.current, total, case.target, TOLERANCE)
    return replicas, usage, None


def _tolerance_alg_cases() -> list[Case]:
    """TestReplicaCalcComputedToleranceAlgImplementation: targets back-calculated around the tolerance."""
    start_pods = 10
    used_total = start_pods * 150
    requested_total = 2 * used_total
    requested_to_used = float(requested_total // used_total)
    per_pod_requested = requested_total // start_pods
    offsets = [100, -100, 10, -10, 2, -2, 1, -1, 0, 0]
    requests = [(per_pod_requested + o) / 1000 for o in offsets]
    cases = []
    for margin, name in ((0.01, "scales"), (0.004, "stays within tolerance")):
        target = abs(1 / (requested_to_used * (1 - 0.1))) + margin
        percent = int(target * 100)
        ratio = used_total / (requested_total * target)
        expected = math.ceil(ratio * start_pods) if margin == 0.01 else start_pods
        cases.append(
            Case(
                f"TestReplicaCalcComputedToleranceAlgImplementation ({name})",
                "resource",
                start_pods,
                expected,
                [used_total // 10] * 10,
                percent,
                expected_usage=used_total * 100 // requested_total,
                expected_raw=CONTAINERS * used_total // 10,
                requests=requests,
            )
        )
    return cases


ONE = [1.0]
CASES = [
    Case(
        "TestReplicaCalcDisjointResourcesMetrics",
        "resource",
        1,
        None,
        [100],
        100,
        requests=ONE,
        pod_names=["an-older-pod-name"],
        error="no metrics returned matched known pods",
    ),
    Case("TestReplicaCalcScaleUp", "resource", 3, 5, [300, 500, 700], 30, 50, CONTAINERS * 500, ONE * 3),
    Case(
        "TestReplicaCalcScaleUpUnreadyLessScale",
        "resource",
        3,
        4,
        [300, 500, 700],
        30,
        60,
        CONTAINERS * 600,
        ONE * 3,
        readiness=[False, True, True],
    ),
    Case(
        "TestReplicaCalcScaleUpHotCpuLessScale",
        "resource",
        3,
        4,
        [300, 500, 700],
        30,
        60,
        CONTAINERS * 600,
        ONE * 3,
        starts=["hot", "cool", "cool"],
    ),
    Case(
        "TestReplicaCalcScaleUpUnreadyNoScale",
        "resource",
        3,
        3,
        [400, 500, 700],
        30,
        40,
        CONTAINERS * 400,
        ONE * 3,
        readiness=[True, False, False],
    ),
    Case(
        "TestReplicaCalcScaleHotCpuNoScale",
        "resource",
        3,
        3,
        [400, 500, 700],
        30,
        40,
        CONTAINERS * 400,
        ONE * 3,
        readiness=[True, False, False],
        starts=["cool", "hot", "hot"],
    ),
    Case(
        "TestReplicaCalcScaleUpIgnoresFailedPods",
        "resource",
        2,
        4,
        [500, 700],
        30,
        60,
        CONTAINERS * 600,
        ONE * 4,
        readiness=[True, True, False, False],
        phases=["Running", "Running", "Failed", "Failed"],
    ),
    Case(
        "TestReplicaCalcScaleUpIgnoresDeletionPods",
        "resource",
        2,
        4,
        [500, 700],
        30,
        60,
        CONTAINERS * 600,
        ONE * 4,
        readiness=[True, True, False, False],
        phases=["Running"] * 4,
        deleting=[False, False, True, True],
    ),
    Case("TestReplicaCalcScaleUpCM", "pods", 3, 4, [20000, 10000, 30000], 15000, 20000),
    Case(
        "TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale",
        "pods",
        3,
        6,
        [50000, 10000, 30000],
        15000,
        30000,
        readiness=[True, True, False],
        starts=["cool", "cool", "hot"],
    ),
    Case(
        "TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
        "pods",
        3,
        7,
        [50000, 15000, 30000],
        15000,
        31666,
        readiness=[False, True, False],
        starts=["hot", "cool", "hot"],
    ),
    Case("TestReplicaCalcScaleUpCMObject", "object", 3, 4, [20000], 15000, 20000),
    Case("TestReplicaCalcScaleUpCMPerPodObject", "object_per_pod", 3, 4, [20000], 5000, 6667),
    Case(
        "TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods",
        "object",
        3,
        5,
        [50000],
        10000,
        50000,
        readiness=[False, True, False],
    ),
    Case("TestReplicaCalcScaleUpCMExternal", "pods", 1, 2, [8600], 4400, 8600),
    Case("TestReplicaCalcScaleUpCMExternalNoLabels", "pods", 1, 2, [8600], 4400, 8600),
    Case(
        "TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods",
        "external",
        3,
        2,
        [8600],
        4400,
        8600,
        readiness=[False, True, False],
    ),
    Case("TestReplicaCalcScaleUpPerPodCMExternal", "external_per_pod", 3, 4, [8600], 2150, 2867),
    Case("TestReplicaCalcScaleDown", "resource", 5, 3, [100, 300, 500, 250, 250], 50, 28, CONTAINERS * 280, ONE * 5),
    Case("TestReplicaCalcScaleDownCM", "pods", 5, 3, [12000] * 5, 20000, 12000),
    Case("TestReplicaCalcScaleDownPerPodCMObject", "object_per_pod", 5, 3, [6000], 2000, 1200),
    Case("TestReplicaCalcScaleDownCMObject", "object", 5, 3, [12000], 20000, 12000),
    Case("TestReplicaCalcScaleDownCMExternal", "external", 5, 3, [8600], 14334, 8600),
    Case("TestReplicaCalcScaleDownPerPodCMExternal", "external_per_pod", 5, 3, [8600], 2867, 1720),
    Case(
        "TestReplicaCalcScaleDownIncludeUnreadyPods",
        "resource",
        5,
        2,
        [100, 300, 500, 250, 250],
        50,
        30,
        CONTAINERS * 300,
        ONE * 5,
        readiness=[True, True, True, False, False],
    ),
    Case(
        "TestReplicaCalcScaleDownExcludeUnscheduledPods",
        "resource",
        5,
        1,
        [100],
        50,
        10,
        CONTAINERS * 100,
        ONE * 5,
        readiness=[True, False, False, False, False],
        phases=["Running"] + ["Pending"] * 4,
    ),
    Case(
        "TestReplicaCalcScaleDownIgnoreHotCpuPods",
        "resource",
        5,
        2,
        [100, 300, 500, 250, 250],
        50,
        30,
        CONTAINERS * 300,
        ONE * 5,
        starts=["cool", "cool", "cool", "hot", "hot"],
    ),
    Case(
        "TestReplicaCalcScaleDownIgnoresFailedPods",
        "resource",
        5,
        3,
        [100, 300, 500, 250, 250],
        50,
        28,
        CONTAINERS * 280,
        ONE * 7,
        readiness=[True] * 5 + [False] * 2,
        phases=["Running"] * 5 + ["Failed"] * 2,
    ),
    Case(
        "TestReplicaCalcScaleDownIgnoresDeletionPods",
        "resource",
        5,
        3,
        [100, 300, 500, 250, 250],
        50,
        28,
        CONTAINERS * 280,
        ONE * 7,
        readiness=[True] * 5 + [False] * 2,
        phases=["Running"] * 7,
        deleting=[False] * 5 + [True] * 2,
    ),
    Case(
        "TestReplicaCalcTolerance", "resource", 3, 3, [1010, 1030, 1020], 100, 102, CONTAINERS * 1020, [0.9, 1.0, 1.1]
    ),
    Case("TestReplicaCalcToleranceCM", "pods", 3, 3, [20000, 21000, 21000], 20000, 20666),
    Case("TestReplicaCalcToleranceCMObject", "object", 3, 3, [20666], 20000, 20666),
    Case("TestReplicaCalcTolerancePerPodCMObject", "object_per_pod", 4, 4, [20166], 5000, 5042),
    Case("TestReplicaCalcToleranceCMExternal", "external", 3, 3, [8600], 8888, 8600),
    Case("TestReplicaCalcTolerancePerPodCMExternal", "external_per_pod", 3, 3, [8600], 2900, 2867),
    Case(
        "TestReplicaCalcSuperfluousMetrics",
        "resource",
        4,
        24,
        [4000, 9500, 3000, 7000, 3200, 2000],
        100,
        587,
        CONTAINERS * 5875,
        ONE * 4,
    ),
    Case("TestReplicaCalcMissingMetrics", "resource", 4, 3, [400, 95], 100, 24, 495, ONE * 4),
    Case(
        "TestReplicaCalcEmptyMetrics",
        "resource",
        4,
        None,
        [],
        100,
        requests=ONE * 3,
        error="did not receive metrics for targeted pods",
    ),
    Case("TestReplicaCalcEmptyCPURequest", "resource", 1, None, [200], 100, requests=[], error="missing request for"),
    Case("TestReplicaCalcMissingMetricsNoChangeEq", "resource", 2, 2, [1000], 100, 100, CONTAINERS * 1000, ONE * 2),
    Case("TestReplicaCalcMissingMetricsNoChangeGt", "resource", 2, 2, [1900], 100, 190, CONTAINERS * 1900, ONE * 2),
    Case("TestReplicaCalcMissingMetricsNoChangeLt", "resource", 2, 2, [600], 100, 60, CONTAINERS * 600, ONE * 2),
    Case(
        "TestReplicaCalcMissingMetricsUnreadyChange",
        "resource",
        3,
        3,
        [100, 450],
        50,
        45,
        CONTAINERS * 450,
        ONE * 3,
        readiness=[False, True, True],
    ),
    Case(
        "TestReplicaCalcMissingMetricsHotCpuNoChange",
        "resource",
        3,
        3,
        [100, 450],
        50,
        45,
        CONTAINERS * 450,
        ONE * 3,
        starts=["hot", "cool", "cool"],
    ),
    Case(
        "TestReplicaCalcMissingMetricsUnreadyScaleUp",
        "resource",
        3,
        4,
        [100, 2000],
        50,
        200,
        CONTAINERS * 2000,
        ONE * 3,
        readiness=[False, True, True],
    ),
    Case(
        "TestReplicaCalcMissingMetricsHotCpuScaleUp",
        "resource",
        3,
        4,
        [100, 2000],
        50,
        200,
        CONTAINERS * 2000,
        ONE * 3,
        readiness=[False, True, True],
        starts=["hot", "cool", "cool"],
    ),
    Case(
        "TestReplicaCalcMissingMetricsUnreadyScaleDown",
        "resource",
        4,
        3,
        [100, 100, 100],
        50,
        10,
        CONTAINERS * 100,
        ONE * 4,
        readiness=[False, True, True, True],
    ),
    Case(
        "TestReplicaCalcDuringRollingUpdateWithMaxSurge",
        "resource",
        2,
        2,
        [100, 100],
        50,
        10,
        CONTAINERS * 100,
        ONE * 3,
        phases=["Running"] * 3,
    ),
    *_tolerance_alg_cases(),
]


@pytest.mark.parametrize("case", CASES, ids=[c.source for c in CASES])
def test_replica_calculator_matches_the_hpa(case: Case) -> None:
    """Same pods, samples and targets as the Go test give the same replicas, usage and raw value."""
    if case.error:
        with pytest.raises(MetricUnavailable, match=case.error):
            run(case)
        return
    replicas, usage, raw = run(case)
    assert replicas == case.expected
    assert usage == case.expected_usage
    if case.expected_raw is not None:
        assert raw == case.expected_raw
