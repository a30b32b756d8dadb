"""How many targets the engine evaluates per second on one core (``make bench``; goal >= 10,000/s).

Bounded: each scenario runs for about two seconds.  Targets carry 4 pods each; the HPA scenario uses a
Pods metric with behavior, the mixed one adds a CPU Utilization metric and a composite rule.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from services.decider.engine.evaluate import TargetState, evaluate
from services.decider.engine.observation import Observation, Pod
from services.decider.engine.spec import ControllerSettings, TargetPolicy
from services.decider.policy.loader import parse_policies
from shared.schemas import MetricSample

TARGETS = 2_000
PODS = 4
SECONDS = 2.0

PODS_METRIC = """\
  metrics:
    - type: Pods
      pods: {metric: {name: qps}, target: {type: AverageValue, averageValue: "10"}}
"""
MIXED = (
    PODS_METRIC
    + """\
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
  rules:
    - name: hot
      when: {all: [{metric: qps, aggregate: sum, op: ">", value: 1000}]}
      action: {add: 2}
"""
)


def build_policy(name: str, metrics: str) -> TargetPolicy:
    text = f"""\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: {name}}}
spec:
  scaleTargetRef: {{name: {name}}}
  minReplicas: 1
  maxReplicas: 50
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 60}}
{metrics}"""
    (policy,) = parse_policies(text, file=f"{name}.yaml", settings=ControllerSettings())
    return policy


def build_observation(index: int, now: float) -> Observation:
    pods = [Pod(name=f"t{index}-{p}", started_at=now - 3600, ready_changed_at=now - 3500) for p in range(PODS)]
    samples: list[MetricSample] = []
    for p, pod in enumerate(pods):
        labels = {"pod": pod.name}
        samples.append(MetricSample(name="qps", value=8.0 + (index + p) % 7, timestamp=now, labels=labels))
        samples.append(MetricSample(name="cpu", value=0.3 + p * 0.1, timestamp=now, labels=labels))
        samples.append(MetricSample(name="cpu_request", value=1.0, timestamp=now, labels=labels))
    return Observation(now=now, spec_replicas=PODS, status_replicas=PODS, pods=pods, samples=samples, samples_at=now)


def measure(name: str, metrics: str) -> float:
    template = build_policy("t0", metrics)
    policies = [dataclasses.replace(template, name=f"t{i}", target=f"t{i}") for i in range(TARGETS)]
    states = [TargetState() for _ in range(TARGETS)]
    now = 1_700_000_000.0
    evaluated = 0
    evaluating = 0.0
    started = time.perf_counter()
    tick = 0
    run: Callable[[TargetPolicy, TargetState, Observation], object] = evaluate
    while time.perf_counter() - started < SECONDS:
        tick_now = now + tick
        observations = [build_observation(i, tick_now) for i in range(TARGETS)]
        begin = time.perf_counter()
        for i in range(TARGETS):
            run(policies[i], states[i], observations[i])
        evaluating += time.perf_counter() - begin
        evaluated += TARGETS
        tick += 1
    rate = evaluated / evaluating
    print(
        f"decider engine [{name}]: {evaluated} evaluations in {evaluating:.2f}s of evaluation"
        f" = {rate:,.0f} targets/s (one core; building the inputs is not counted)"
    )
    return rate


def main() -> int:
    hpa = measure("HPA Pods metric + behavior, 4 pods", PODS_METRIC)
    mixed = measure("Pods + CPU utilization + rule, 4 pods", MIXED)
    goal = 10_000
    print(f"goal >= {goal:,}/s: {'met' if min(hpa, mixed) >= goal else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
