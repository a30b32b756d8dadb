"""Whole-HPA reconcile cases through the engine's ``evaluate``, from policy YAML to reason code.

Sources: kubernetes/kubernetes ``pkg/controller/podautoscaler/horizontal_test.go`` (TestScaleUp, TestScaleDown,
TestScaleDownStabilizeInitialSize, TestMissingReports, TestUpscaleCap, TestUpscaleCapGreaterThanMaxReplicas,
TestScaleUpOneMetricEmpty, TestNoScaleDownOneMetricEmpty) and the bounds branches of ``reconcileAutoscaler``
in ``horizontal.go``.  Pods are ready and past their CPU initialization period; CPU levels are milli-cores.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import yaml

from services.decider.engine.evaluate import TargetState, evaluate
from services.decider.engine.observation import Observation, Pod
from services.decider.engine.spec import ControllerSettings, TargetPolicy
from services.decider.policy.compile import compile_policy
from services.decider.policy.model import PolicyDocument
from shared.schemas import MetricSample

NOW = 1_700_000_000.0
SETTINGS = ControllerSettings(cpu_initialization_period_seconds=120.0, initial_readiness_delay_seconds=10.0)


def hpa(min_replicas: int, max_replicas: int, metrics: list[dict[str, Any]], behavior: Any = None) -> TargetPolicy:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "test-hpa"},
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "metrics": metrics,
    }
    if behavior is not None:
        spec["behavior"] = behavior
    document = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "test-hpa", "namespace": "test-namespace"},
        "spec": spec,
    }
    parsed = msgspec.convert(document, PolicyDocument)
    return compile_policy(parsed, file="test.yaml", settings=SETTINGS)


def cpu(target: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
    }


def failing_external() -> dict[str, Any]:
    return {
        "type": "External",
        "external": {"metric": {"name": "qps", "selector": {}}, "target": {"type": "Value", "value": "100m"}},
    }


def observe(spec_replicas: int, levels: list[int], requests: list[float]) -> Observation:
    pods = [
        Pod(name=f"test-pod-{i}", ready=True, started_at=NOW - 180, ready_changed_at=NOW - 170)
        for i in range(len(requests))
    ]
    samples = [
        MetricSample(name="cpu", value=lv / 1000, timestamp=NOW, labels={"pod": f"test-pod-{i}"})
        for i, lv in enumerate(levels)
    ]
    samples += [
        MetricSample(name="cpu_request", value=r, timestamp=NOW, labels={"pod": f"test-pod-{i}"})
        for i, r in enumerate(requests)
    ]
    return Observation(
        now=NOW, spec_replicas=spec_replicas, status_replicas=spec_replicas, pods=pods, samples=samples, samples_at=NOW
    )


def fresh() -> TargetState:
    """A target the HPA has never seen (its history starts with the current size)."""
    return TargetState()


def empty_history() -> TargetState:
    """``recommendations: []timestampedRecommendation{}`` in the Go tests: history present but empty."""
    state = TargetState()
    state.hpa.initialized = True
    return state


CASES = [
    ("TestScaleUp", hpa(2, 6, [cpu(30)]), fresh(), observe(3, [300, 500, 700], [1.0] * 3), 5, "DesiredWithinRange"),
    (
        "TestScaleDown",
        hpa(2, 6, [cpu(50)]),
        empty_history(),
        observe(5, [100, 300, 500, 250, 250], [1.0] * 5),
        3,
        "DesiredWithinRange",
    ),
    (
        "TestScaleDownStabilizeInitialSize",
        hpa(2, 6, [cpu(50)]),
        fresh(),
        observe(5, [100, 300, 500, 250, 250], [1.0] * 5),
        5,
        "ScaleDownStabilized",
    ),
    ("TestMissingReports", hpa(1, 5, [cpu(50)]), empty_history(), observe(4, [200], [0.2]), 2, "DesiredWithinRange"),
    (
        "TestUpscaleCap",
        hpa(
            1,
            100,
            [cpu(10)],
            {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 700, "periodSeconds": 60}],
                }
            },
        ),
        fresh(),
        observe(3, [100, 200, 300], [0.1] * 3),
        24,
        "ScaleUpLimit",
    ),
    (
        "TestUpscaleCapGreaterThanMaxReplicas",
        hpa(
            1,
            20,
            [cpu(10)],
            {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 700, "periodSeconds": 60}],
                }
            },
        ),
        fresh(),
        observe(3, [100, 200, 300], [0.1] * 3),
        20,
        "TooManyReplicas",
    ),
    (
        "TestScaleUpOneMetricEmpty",
        hpa(2, 6, [cpu(30), failing_external()]),
        fresh(),
        observe(3, [300, 400, 500], [1.0] * 3),
        4,
        "DesiredWithinRange",
    ),
    (
        "TestNoScaleDownOneMetricEmpty",
        hpa(2, 6, [cpu(50), failing_external()]),
        empty_history(),
        observe(5, [100, 300, 500, 250, 250], [1.0] * 5),
        5,
        "FailedGetExternalMetric",
    ),
    (
        "horizontal.go reconcileAutoscaler: current above maxReplicas",
        hpa(3, 5, [cpu(50)]),
        fresh(),
        observe(10, [100] * 10, [1.0] * 10),
        5,
        "TooManyReplicas",
    ),
    (
        "horizontal.go reconcileAutoscaler: current below minReplicas",
        hpa(3, 5, [cpu(50)]),
        fresh(),
        observe(2, [500, 500], [1.0] * 2),
        3,
        "TooFewReplicas",
    ),
    (
        "horizontal.go reconcileAutoscaler: zero replicas disable scaling",
        hpa(3, 5, [cpu(50)]),
        fresh(),
        observe(0, [], []),
        0,
        "ScalingDisabled",
    ),
    (
        "horizontal.go convertDesiredReplicasWithRules: no behavior caps at max(2 x current, 4)",
        hpa(1, 100, [cpu(10)]),
        fresh(),
        observe(3, [100, 200, 300], [0.1] * 3),
        6,
        "ScaleUpLimit",
    ),
]


@pytest.mark.parametrize(
    ("source", "policy", "state", "observation", "expected", "reason"), CASES, ids=[c[0] for c in CASES]
)
def test_reconcile_matches_the_hpa(
    source: str, policy: TargetPolicy, state: TargetState, observation: Observation, expected: int, reason: str
) -> None:
    outcome = evaluate(policy, state, observation)
    assert (outcome.desired, outcome.reason) == (expected, reason)


def test_the_scale_down_stabilization_window_holds_the_highest_recent_recommendation() -> None:
    """Legacy path: after a high recommendation, lower ones are held for the downscale window (5 min)."""
    policy = hpa(1, 10, [cpu(50)])
    state = fresh()
    assert evaluate(policy, state, observe(4, [1000] * 4, [1.0] * 4)).desired == 8
    low = observe(8, [100] * 8, [1.0] * 8)
    held = evaluate(policy, state, low)
    assert (held.desired, held.reason) == (8, "ScaleDownStabilized")
    released = evaluate(policy, state, _at(observe(8, [100] * 8, [1.0] * 8), NOW + 301))
    assert (released.desired, released.reason) == (2, "DesiredWithinRange")


def _at(observation: Observation, when: float) -> Observation:
    return Observation(
        now=when,
        spec_replicas=observation.spec_replicas,
        status_replicas=observation.status_replicas,
        pods=observation.pods,
        samples=[msgspec.structs.replace(s, timestamp=when) for s in observation.samples],
        samples_at=when,
    )


def test_every_decision_explains_inputs_winner_raw_recommendation_and_adjustments() -> None:
    policy = hpa(2, 6, [cpu(30)])
    outcome = evaluate(policy, fresh(), observe(3, [300, 900, 900], [1.0] * 3))
    explanation = outcome.explanation
    (cpu_input,) = explanation.inputs
    assert (cpu_input.metric, cpu_input.value, cpu_input.target, cpu_input.proposal) == (
        "cpu resource utilization (percentage of request)",
        70.0,
        30.0,
        7,
    )
    assert explanation.winner == cpu_input.metric
    assert explanation.raw_recommendation == 7
    assert [(a.stage, a.before, a.after, a.reason) for a in explanation.adjustments] == [
        ("bounds", 7, 6, "TooManyReplicas")
    ]
    assert explanation.conditions["ScalingActive"] == "ValidMetricFound"


REAL_MANIFEST = """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{}'
  creationTimestamp: "2024-05-01T10:00:00Z"
  name: php-apache
  namespace: default
  resourceVersion: "12345"
  uid: 9a1c2d3e-0000-4000-8000-000000000000
spec:
  maxReplicas: 10
  metrics:
  - resource:
      name: cpu
      target:
        averageUtilization: 50
        type: Utilization
    type: Resource
  minReplicas: 1
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: php-apache
status:
  currentMetrics:
  - resource:
      current:
        averageUtilization: 0
        averageValue: 1m
      name: cpu
    type: Resource
  currentReplicas: 1
  desiredReplicas: 1
"""


def test_a_real_hpa_manifest_is_accepted_unchanged_and_targets_namespace_slash_name() -> None:
    document = msgspec.convert(yaml.safe_load(REAL_MANIFEST), PolicyDocument)
    policy = compile_policy(document, file="php-apache.yaml", settings=SETTINGS)
    assert policy.target == "default/php-apache"
    assert (policy.min_replicas, policy.max_replicas, policy.behavior) == (1, 10, None)
    assert policy.metrics[0].kind == "resource_utilization"


def test_a_metric_selector_picks_the_matching_series_and_inputs_carry_their_age() -> None:
    policy = hpa(
        1,
        10,
        [
            {
                "type": "External",
                "external": {
                    "metric": {
                        "name": "queue_depth",
                        "selector": {
                            "matchLabels": {"queue": "orders"},
                            "matchExpressions": [{"key": "region", "operator": "In", "values": ["eu", "us"]}],
                        },
                    },
                    "target": {"type": "AverageValue", "averageValue": "10"},
                },
            }
        ],
    )
    samples = [
        MetricSample(name="queue_depth", value=40, timestamp=NOW - 4, labels={"queue": "orders", "region": "eu"}),
        MetricSample(name="queue_depth", value=20, timestamp=NOW - 2, labels={"queue": "orders", "region": "us"}),
        MetricSample(name="queue_depth", value=900, timestamp=NOW, labels={"queue": "emails", "region": "eu"}),
        MetricSample(name="queue_depth", value=900, timestamp=NOW, labels={"queue": "orders", "region": "ap"}),
    ]
    observation = Observation(
        now=NOW, spec_replicas=4, status_replicas=4, pods=[Pod(n) for n in "abcd"], samples=samples, samples_at=NOW
    )
    outcome = evaluate(policy, fresh(), observation)
    assert outcome.desired == 6, "only orders in eu/us count: ceil(60 / 10)"
    (metric_input,) = outcome.explanation.inputs
    assert metric_input.age_seconds == 2.0, "the age of the newest sample used"


def test_per_direction_tolerance_lets_a_policy_scale_up_eagerly_and_down_reluctantly() -> None:
    """``behavior.scaleUp.tolerance`` / ``scaleDown.tolerance`` (Kubernetes >= 1.33) replace the global 0.1."""
    behavior = {"scaleUp": {"tolerance": "0"}, "scaleDown": {"tolerance": "0.5", "stabilizationWindowSeconds": 0}}
    policy = hpa(1, 10, [cpu(50)], behavior)
    assert (policy.tolerance.up, policy.tolerance.down) == (0.0, 0.5)
    up = evaluate(policy, fresh(), observe(4, [520] * 4, [1.0] * 4))
    assert up.desired == 5, "104 % of target is outside a zero scale-up tolerance: ceil(1.04 * 4)"
    down = evaluate(policy, empty_history(), observe(4, [300] * 4, [1.0] * 4))
    assert down.desired == 4, "60 % of target is within a 0.5 scale-down tolerance"
    default = evaluate(hpa(1, 10, [cpu(50)]), empty_history(), observe(4, [300] * 4, [1.0] * 4))
    assert default.desired == 3, "with the default 0.1 it scales down: ceil(0.6 * 4)"


def test_a_status_without_a_replica_list_takes_the_pods_from_the_samples() -> None:
    from shared.schemas import TargetStatus

    status = TargetStatus(
        target="web", backend="kubernetes", spec_replicas=2, current_replicas=2, ready_replicas=2, observed_at=NOW
    )
    samples = [MetricSample(name="qps", value=30, timestamp=NOW, labels={"pod": p}) for p in ("web-a", "web-b")]
    observation = Observation.from_status(NOW, status, samples, NOW)
    assert [p.name for p in observation.pods] == ["web-a", "web-b"]
    policy = hpa(
        1,
        10,
        [
            {
                "type": "Pods",
                "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}},
            }
        ],
    )
    assert evaluate(policy, fresh(), observation).desired == 4
