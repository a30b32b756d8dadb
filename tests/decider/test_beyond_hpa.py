"""Beyond the HPA: composite rules, scale to zero (KEDA), panic mode (Knative KPA), fallback and pause.

Every test drives the pure engine with explicit times (no sleeps): ``at(t)`` builds the observation of
second ``t``; the target's replicas follow the decisions as an ideal actuator would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.decider.engine.evaluate import Outcome, TargetState, evaluate
from services.decider.engine.observation import Observation, Pod
from services.decider.engine.spec import ControllerSettings, RuleSpec, TargetPolicy
from services.decider.policy.loader import parse_policies
from shared.schemas import MetricSample, Quality

T0 = 1_700_000_000.0


def policy(spec: str) -> TargetPolicy:
    text = "apiVersion: scalebus.dev/v1\nkind: ScalingPolicy\nmetadata: {name: shop}\nspec:\n" + spec
    (compiled,) = parse_policies(text, file="shop.yaml", settings=ControllerSettings())
    return compiled


@dataclass
class Target:
    """A target whose replicas follow the engine's decisions."""

    policy: TargetPolicy
    replicas: int
    state: TargetState = field(default_factory=TargetState)

    def step(self, t: float, metrics: dict[str, float], quality: Quality = "ok") -> Outcome:
        samples = [
            MetricSample(name=name, value=value, timestamp=T0 + t, quality=quality) for name, value in metrics.items()
        ]
        pods = [Pod(name=f"shop-{i}", started_at=T0 - 3600, ready_changed_at=T0 - 3500) for i in range(self.replicas)]
        observation = Observation(
            now=T0 + t,
            spec_replicas=self.replicas,
            status_replicas=self.replicas,
            pods=pods,
            samples=samples,
            samples_at=T0 + t,
        )
        outcome = evaluate(self.policy, self.state, observation)
        self.replicas = outcome.desired
        return outcome


FAST = """\
  behavior:
    scaleUp: {stabilizationWindowSeconds: 0, policies: [{type: Percent, value: 1000, periodSeconds: 1}]}
    scaleDown: {stabilizationWindowSeconds: 0, policies: [{type: Percent, value: 100, periodSeconds: 1}]}
"""

RULES = (
    """\
  scaleTargetRef: {name: shop}
  minReplicas: 2
  maxReplicas: 20
"""
    + FAST
    + """\
  rules:
    - name: emergency
      priority: 100
      when:
        all:
          - {metric: cpu_utilization, op: ">", value: 80}
          - {metric: qps, aggregate: sum, op: ">", value: 1000}
          - {metric: p95_latency_ms, aggregate: max, op: ">", value: 800}
      action: {add: 2}
    - name: gentle
      priority: 50
      when:
        any:
          - {metric: cpu_utilization, op: ">", value: 70}
          - {metric: memory_utilization, op: ">", value: 85}
      action: {add: 1}
      recheckAfterSeconds: 180
    - name: quiet
      priority: 10
      when:
        all:
          - {metric: qps, aggregate: sum, op: "<", value: 100, forSeconds: 600}
      action: {remove: 1}
      recheckAfterSeconds: 60
"""
)


def test_the_emergency_rule_wins_over_lower_priorities_and_adds_two_at_once() -> None:
    shop = Target(policy(RULES), replicas=4)
    outcome = shop.step(0, {"cpu_utilization": 90, "qps": 1500, "p95_latency_ms": 900, "memory_utilization": 50})
    assert outcome.desired == 6
    assert outcome.explanation.winner == "rule emergency (+2)"
    assert outcome.explanation.raw_recommendation == 6


def test_an_any_rule_fires_on_one_condition_and_waits_for_its_recheck_delay() -> None:
    shop = Target(policy(RULES), replicas=3)
    load = {"cpu_utilization": 50, "qps": 500, "p95_latency_ms": 100, "memory_utilization": 90}
    assert shop.step(0, load).desired == 4
    assert shop.step(60, load).desired == 4, "inside the 3 minute re-check delay nothing fires"
    assert shop.step(179, load).desired == 4
    outcome = shop.step(180, load)
    assert (outcome.desired, outcome.explanation.winner) == (5, "rule gentle (+1)")


def test_scale_down_only_after_qps_stays_low_for_ten_minutes() -> None:
    shop = Target(policy(RULES), replicas=5)
    quiet = {"cpu_utilization": 20, "qps": 50, "p95_latency_ms": 50, "memory_utilization": 30}
    for t in range(0, 600, 30):
        assert shop.step(t, quiet).desired == 5
    assert shop.step(300.5, {**quiet, "qps": 150}).desired == 5, "a busy moment resets the hold"
    for t in range(301, 901, 60):
        assert shop.step(t, quiet).desired == 5
    outcome = shop.step(901, quiet)
    assert outcome.desired == 4
    assert outcome.explanation.winner == "rule quiet (-1)"


def test_rule_results_are_still_bounded_by_max_replicas() -> None:
    shop = Target(policy(RULES), replicas=19)
    outcome = shop.step(0, {"cpu_utilization": 90, "qps": 1500, "p95_latency_ms": 900})
    assert (outcome.desired, outcome.reason) == (20, "TooManyReplicas")


def test_tiered_actions_add_remove_multiply_and_set() -> None:
    def rule(action: str, amount: float) -> RuleSpec:
        return RuleSpec("r", "all", (), action, amount)  # type: ignore[arg-type]

    assert rule("add", 2).apply(3) == 5
    assert rule("remove", 5).apply(3) == 0
    assert rule("multiply", 1.5).apply(3) == 5
    assert rule("set", 7).apply(3) == 7


SCALE_TO_ZERO = (
    """\
  scaleTargetRef: {name: shop}
  minReplicas: 1
  maxReplicas: 10
"""
    + FAST
    + """\
  metrics:
    - type: External
      external:
        metric: {name: queue_depth}
        target: {type: AverageValue, averageValue: "5"}
  scaleToZero:
    triggers: [{metric: queue_depth, threshold: 0}]
    cooldownPeriodSeconds: 300
"""
)


def test_an_idle_target_scales_to_zero_after_the_cooldown_and_activates_on_work() -> None:
    shop = Target(policy(SCALE_TO_ZERO), replicas=2)
    assert shop.step(0, {"queue_depth": 0}).desired == 1, "idle: the HPA part goes down to minReplicas"
    assert shop.step(299, {"queue_depth": 0}).desired == 1, "still inside the cooldown"
    outcome = shop.step(300, {"queue_depth": 0})
    assert (outcome.desired, outcome.reason) == (0, "ScaleToZero")
    assert shop.step(400, {"queue_depth": 0}).reason == "ScaledToZero"
    woke = shop.step(500, {"queue_depth": 12})
    assert (woke.desired, woke.reason) == (1, "ActivatedFromZero")
    assert shop.step(501, {"queue_depth": 12}).desired == 3, "then the HPA sizes it: ceil(12 / 5)"


def test_activity_restarts_the_cooldown_and_idle_replicas_replace_zero() -> None:
    spec = SCALE_TO_ZERO.replace("minReplicas: 1", "minReplicas: 3").replace(
        "cooldownPeriodSeconds: 300", "cooldownPeriodSeconds: 300\n    idleReplicaCount: 1"
    )
    shop = Target(policy(spec), replicas=3)
    shop.step(0, {"queue_depth": 0})
    shop.step(200, {"queue_depth": 4})
    assert shop.step(450, {"queue_depth": 0}).desired == 3, "active at 200, so the cooldown ends at 500"
    outcome = shop.step(500, {"queue_depth": 0})
    assert (outcome.desired, outcome.reason) == (1, "ScaleToZero")
    assert shop.step(600, {"queue_depth": 2}).desired == 3, "activation brings it back to minReplicas"


PANIC = (
    """\
  scaleTargetRef: {name: shop}
  minReplicas: 1
  maxReplicas: 100
"""
    + FAST
    + """\
  panic:
    metric: concurrency
    targetPerReplica: 10
    stableWindowSeconds: 60
    panicWindowPercentage: 10
    panicThresholdPercentage: 200
"""
)


def test_a_burst_enters_panic_mode_which_never_scales_down_until_a_stable_window_passes() -> None:
    shop = Target(policy(PANIC), replicas=2)
    for t in range(60):
        assert shop.step(t, {"concurrency": 20}).desired == 2
    sizes = [shop.step(t, {"concurrency": 100}).desired for t in range(60, 66)]
    assert sizes == sorted(sizes), "while panicking the size never decreases"
    assert sizes[-1] == 10, "the panic window (6 s) sees 100 in flight: ceil(100 / 10)"
    # The last over-threshold tick was at 60 (2 ready pods, 100 in flight): panic lasts until 120.
    calm = [shop.step(t, {"concurrency": 20}) for t in range(66, 120)]
    assert {o.desired for o in calm} == {10}, "no scale-down while panicking"
    assert calm[-1].explanation.conditions["Panic"] == "Panicking"
    after = shop.step(121, {"concurrency": 20})
    assert after.explanation.conditions["Panic"] == "Stable"
    assert after.desired == 5, "stable again: at most halve per decision (max scale-down rate 2)"


def test_a_restarted_autoscaler_with_ready_pods_starts_in_panic_and_does_not_scale_down() -> None:
    shop = Target(policy(PANIC), replicas=6)
    outcome = shop.step(0, {"concurrency": 5})
    assert outcome.desired == 6
    assert outcome.explanation.conditions["Panic"] == "Panicking"


FALLBACK = (
    """\
  scaleTargetRef: {name: shop}
  minReplicas: 1
  maxReplicas: 10
"""
    + FAST
    + """\
  metrics:
    - type: External
      external:
        metric: {name: qps}
        target: {type: AverageValue, averageValue: "10"}
  fallback: {failureThreshold: 3, replicas: 6}
"""
)


def test_fallback_replicas_after_n_failed_evaluations_and_back_to_normal_on_recovery() -> None:
    shop = Target(policy(FALLBACK), replicas=2)
    assert shop.step(0, {"qps": 20}).desired == 2
    first = shop.step(1, {"qps": 20}, quality="error")
    assert (first.desired, first.reason) == (2, "FailedGetExternalMetric"), "one failure: hold, as the HPA does"
    assert shop.step(2, {"qps": 20}, quality="stale").desired == 2
    third = shop.step(3, {"qps": 20}, quality="error")
    assert (third.desired, third.reason) == (6, "FallbackReplicas")
    assert shop.step(4, {"qps": 30}).desired == 3, "good samples again: the HPA decides (ceil(30 / 10))"


def test_a_paused_policy_keeps_the_current_size() -> None:
    shop = Target(policy(FALLBACK + "  paused: true\n"), replicas=2)
    outcome = shop.step(0, {"qps": 500})
    assert (outcome.desired, outcome.reason) == (2, "Paused")


def test_paused_replicas_hold_the_target_at_a_fixed_size() -> None:
    shop = Target(policy(FALLBACK + "  paused: true\n  pausedReplicas: 4\n"), replicas=2)
    outcome = shop.step(0, {"qps": 500})
    assert (outcome.desired, outcome.reason) == (4, "Paused")
    assert [(a.stage, a.before, a.after) for a in outcome.explanation.adjustments] == [("paused", 2, 4)]
    assert shop.step(1, {"qps": 500}).desired == 4


def test_scale_to_zero_and_activation_show_up_as_adjustments() -> None:
    shop = Target(policy(SCALE_TO_ZERO), replicas=1)
    shop.step(0, {"queue_depth": 0})
    to_zero = shop.step(300, {"queue_depth": 0})
    assert [(a.stage, a.before, a.after, a.reason) for a in to_zero.explanation.adjustments] == [
        ("cooldown", 1, 0, "ScaleToZero")
    ]
    woke = shop.step(301, {"queue_depth": 3})
    assert [(a.stage, a.before, a.after) for a in woke.explanation.adjustments] == [("activation", 0, 1)]


def test_a_decision_message_leads_with_the_metric_that_won() -> None:
    """Operators read the message first: it names the winning metric, its value, its target and its proposal."""
    target = Target(
        policy(
            "  scaleTargetRef: {name: shop}\n  minReplicas: 1\n  maxReplicas: 10\n"
            + FAST
            + "  metrics:\n    - type: External\n      external:\n        metric: {name: qps}\n"
            "        target: {type: AverageValue, averageValue: '100'}\n"
        ),
        replicas=1,
    )
    outcome = target.step(0, {"qps": 420})
    assert outcome.desired == 5
    assert outcome.message.startswith("external metric qps 420 (target 100) -> 5; ")
