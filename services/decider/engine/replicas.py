"""Replica proposals per metric, as the HPA's ReplicaCalculator computes them (kubernetes v1.28).

Values are handled in milli-units and integer arithmetic where the HPA does so, so that the same
inputs give the same replica counts.  See ``/work/shared/ALGORITHMS.md`` and ``docs/policy.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import msgspec

from services.decider.engine.observation import IGNORED_PHASES, Observation, Pod
from services.decider.engine.spec import ControllerSettings, MetricRule, Tolerance

PodMetrics = dict[str, tuple[int, float]]
"""Pod name -> (value in milli-units, sample timestamp)."""


class MetricUnavailable(Exception):
    """The metric could not yield a proposal (the HPA's 'invalid metric')."""


class PodGroups(msgspec.Struct, frozen=True):
    """The pods of one metric by how the HPA counts them (built per evaluation, never changed after)."""

    ready_count: int
    unready: set[str]
    missing: set[str]
    ignored: set[str]


class MetricProposal(msgspec.Struct, frozen=True):
    """What one metric asks for, or why it could not say."""

    rule: MetricRule
    replicas: int | None
    usage: float = 0.0
    """Observed value in the target's unit (utilization percent, or the average/total value)."""
    target: float = 0.0
    age_seconds: float = 0.0
    error: str = ""

    @property
    def valid(self) -> bool:
        return self.replicas is not None


def to_milli(value: float) -> int:
    return round(value * 1000.0)


def group_pods(
    pods: Sequence[Pod],
    metrics: PodMetrics,
    *,
    is_cpu: bool,
    settings: ControllerSettings,
    now: float,
) -> PodGroups:
    """Split pods into ready (counted), unready, missing (no sample) and ignored (deleting, finished)."""
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    window = settings.metric_window_seconds
    initialization = settings.cpu_initialization_period_seconds
    readiness_delay = settings.initial_readiness_delay_seconds
    for pod in pods:
        phase = pod.phase
        if pod.deleting or phase in IGNORED_PHASES:
            ignored.add(pod.name)
            continue
        if phase == "Pending":
            unready.add(pod.name)
            continue
        metric = metrics.get(pod.name)
        if metric is None:
            missing.add(pod.name)
            continue
        if is_cpu:
            started = pod.started_at
            if pod.ready is None or started is None:
                not_ready = True
            elif started + initialization > now:
                # Inside the initialization period: ignore the sample if the pod is unready or if a full
                # metric window has not passed since the last readiness transition.
                not_ready = (not pod.ready) or metric[1] < pod.ready_changed_at + window
            else:
                # After it: ignore the sample only if the pod is unready and never became ready.
                not_ready = (not pod.ready) and (started + readiness_delay > pod.ready_changed_at)
            if not_ready:
                unready.add(pod.name)
                continue
        ready += 1
    return PodGroups(ready, unready, missing, ignored)


def _counted(metrics: PodMetrics, groups: PodGroups) -> PodMetrics:
    """The metrics of the pods that count (a copy: the adjustments below add entries to it)."""
    excluded = groups.ignored | groups.unready
    if not excluded:
        return dict(metrics)
    return {pod: v for pod, v in metrics.items() if pod not in excluded}


def metric_usage_ratio(metrics: PodMetrics, target_milli: int) -> tuple[float, int]:
    total = sum(value for value, _ in metrics.values())
    count = len(metrics)
    usage = total // count if total >= 0 else -((-total) // count)  # Go's truncating int64 division
    return usage / target_milli, usage


def resource_utilization_ratio(
    metrics: PodMetrics, requests: dict[str, int], target_utilization: int
) -> tuple[float, int, int]:
    metrics_total = 0
    requests_total = 0
    entities = 0
    for pod, (value, _) in metrics.items():
        request = requests.get(pod)
        if request is None:
            continue
        metrics_total += value
        requests_total += request
        entities += 1
    if requests_total == 0:
        raise MetricUnavailable("no metrics returned matched known pods")
    utilization = (metrics_total * 100) // requests_total
    return utilization / target_utilization, utilization, metrics_total // entities


def _adjusted_replicas(
    metrics: PodMetrics,
    groups: PodGroups,
    current: int,
    ratio: float,
    tolerance: Tolerance,
    missing_value_on_down: dict[str, int],
    recompute: Callable[[PodMetrics], float],
) -> int:
    """The shared second half of GetResourceReplicas / calcPlainMetricReplicas."""
    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if tolerance.within(ratio):
            return current
        return math.ceil(ratio * groups.ready_count)
    if groups.missing:
        if ratio < 1.0:
            for pod in groups.missing:
                metrics[pod] = (missing_value_on_down[pod], 0.0)
        elif ratio > 1.0:
            for pod in groups.missing:
                metrics[pod] = (0, 0.0)
    if scale_up_with_unready:
        for pod in groups.unready:
            metrics[pod] = (0, 0.0)
    new_ratio = recompute(metrics)
    if tolerance.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current
    new_replicas = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and new_replicas > current) or (new_ratio > 1.0 and new_replicas < current):
        return current
    return new_replicas


def plain_metric_replicas(
    metrics: PodMetrics,
    pods: Sequence[Pod],
    current: int,
    target_milli: int,
    *,
    is_cpu: bool,
    tolerance: Tolerance,
    settings: ControllerSettings,
    now: float,
) -> tuple[int, int]:
    """calcPlainMetricReplicas: (replicas, average usage in milli-units)."""
    if not pods:
        raise MetricUnavailable("no pods returned by selector while calculating replica count")
    groups = group_pods(pods, metrics, is_cpu=is_cpu, settings=settings, now=now)
    metrics = _counted(metrics, groups)
    if not metrics:
        raise MetricUnavailable("did not receive metrics for targeted pods (pods might be unready)")
    ratio, usage = metric_usage_ratio(metrics, target_milli)
    replicas = _adjusted_replicas(
        metrics,
        groups,
        current,
        ratio,
        tolerance,
        dict.fromkeys(groups.missing, target_milli),
        lambda m: metric_usage_ratio(m, target_milli)[0],
    )
    return replicas, usage


def resource_replicas(
    metrics: PodMetrics,
    requests: dict[str, int],
    pods: Sequence[Pod],
    current: int,
    target_utilization: int,
    *,
    is_cpu: bool,
    tolerance: Tolerance,
    settings: ControllerSettings,
    now: float,
) -> tuple[int, int, int]:
    """GetResourceReplicas: (replicas, utilization percent, raw average usage in milli-units)."""
    if not pods:
        raise MetricUnavailable("no pods returned by selector while calculating replica count")
    groups = group_pods(pods, metrics, is_cpu=is_cpu, settings=settings, now=now)
    metrics = _counted(metrics, groups)
    if not metrics:
        raise MetricUnavailable("did not receive metrics for targeted pods (pods might be unready)")
    for pod in pods:
        if pod.name not in requests and pod.name in metrics:
            raise MetricUnavailable(f"missing request for {'cpu' if is_cpu else 'resource'} of Pod {pod.name}")
    ratio, utilization, raw = resource_utilization_ratio(metrics, requests, target_utilization)
    fallback = max(100, target_utilization)
    replicas = _adjusted_replicas(
        metrics,
        groups,
        current,
        ratio,
        tolerance,
        {pod: requests.get(pod, 0) * fallback // 100 for pod in groups.missing},
        lambda m: resource_utilization_ratio(m, requests, target_utilization)[0],
    )
    return replicas, utilization, raw


def usage_ratio_replicas(current: int, ratio: float, pod_count: int, ready_pods: int, tolerance: Tolerance) -> int:
    """getUsageRatioReplicaCount (Object/External Value targets); from zero, no tolerance applies."""
    if current != 0:
        if tolerance.within(ratio):
            return current
        if pod_count == 0:
            raise MetricUnavailable("no pods returned by selector while calculating replica count")
        return math.ceil(ratio * ready_pods)
    return math.ceil(ratio)


def per_pod_replicas(
    status_replicas: int, total_milli: int, target_milli: int, tolerance: Tolerance
) -> tuple[int, int]:
    """GetObjectPerPodMetricReplicas / GetExternalPerPodMetricReplicas: (replicas, per-pod usage)."""
    replicas = status_replicas
    ratio = total_milli / (target_milli * replicas) if replicas else math.inf
    if not tolerance.within(ratio):
        replicas = math.ceil(total_milli / target_milli)
    usage = math.ceil(total_milli / status_replicas) if status_replicas else total_milli
    return replicas, usage


# -- from an observation ------------------------------------------------------------------------


def _per_pod(observation: Observation, name: str, rule: MetricRule) -> PodMetrics:
    """Per-pod values of one metric in milli-units (summed over containers), good samples only."""
    values: PodMetrics = {}
    selector = rule.selector
    container = rule.container
    fallback_stamp = observation.samples_at
    isfinite = math.isfinite
    for sample in observation.samples_named(name):
        value = sample.value
        if sample.quality != "ok" or not isfinite(value):
            continue
        labels = sample.labels
        if selector is not None and not selector.matches(labels):
            continue
        if container and labels.get("container") != container:
            continue
        pod = labels.get("pod")
        if pod is None:
            continue
        stamp = sample.timestamp or fallback_stamp
        if pod in values:
            milli, newest = values[pod]
            values[pod] = (milli + round(value * 1000.0), stamp if stamp > newest else newest)
        else:
            values[pod] = (round(value * 1000.0), stamp)
    return values


def _total(observation: Observation, rule: MetricRule) -> tuple[int, float]:
    total = 0
    newest = 0.0
    found = False
    for sample in observation.samples_named(rule.metric):
        if sample.quality != "ok" or not math.isfinite(sample.value):
            continue
        if rule.selector is not None and not rule.selector.matches(sample.labels):
            continue
        total += to_milli(sample.value)
        newest = max(newest, sample.timestamp or observation.samples_at)
        found = True
    if not found:
        raise MetricUnavailable(f"unable to get metric {rule.metric}: no samples")
    return total, newest


def _age(observation: Observation, stamp: float) -> float:
    return max(0.0, observation.now - stamp) if stamp else 0.0


def compute_proposal(
    rule: MetricRule,
    observation: Observation,
    tolerance: Tolerance,
    settings: ControllerSettings,
) -> MetricProposal:
    """One metric's replica proposal (computeReplicasForMetric), never raising."""
    try:
        return _compute(rule, observation, tolerance, settings)
    except MetricUnavailable as exc:
        return MetricProposal(rule=rule, replicas=None, error=str(exc))


def _compute(
    rule: MetricRule, observation: Observation, tolerance: Tolerance, settings: ControllerSettings
) -> MetricProposal:
    now = observation.now
    current = observation.spec_replicas
    if rule.kind in ("resource_utilization", "resource_average_value", "pods_average_value"):
        metrics = _per_pod(observation, rule.metric, rule)
        if not metrics:
            raise MetricUnavailable(f"unable to get metric {rule.metric}: no samples for any pod")
        age = _age(observation, min(stamp for _, stamp in metrics.values()))
        if rule.kind == "resource_utilization":
            requests = {pod: v for pod, (v, _) in _per_pod(observation, rule.request_metric, rule).items()}
            replicas, utilization, _ = resource_replicas(
                metrics,
                requests,
                observation.pods,
                current,
                rule.target_utilization,
                is_cpu=rule.is_cpu,
                tolerance=tolerance,
                settings=settings,
                now=now,
            )
            return MetricProposal(rule, replicas, float(utilization), float(rule.target_utilization), age)
        replicas, usage = plain_metric_replicas(
            metrics,
            observation.pods,
            current,
            rule.target_milli,
            is_cpu=rule.is_cpu,
            tolerance=tolerance,
            settings=settings,
            now=now,
        )
        return MetricProposal(rule, replicas, usage / 1000.0, rule.target_milli / 1000.0, age)
    total, stamp = _total(observation, rule)
    age = _age(observation, stamp)
    if rule.kind in ("object_value", "external_value"):
        ratio = total / rule.target_milli
        replicas = usage_ratio_replicas(
            current, ratio, len(observation.pods), observation.ready_running_pods, tolerance
        )
        return MetricProposal(rule, replicas, total / 1000.0, rule.target_milli / 1000.0, age)
    replicas, usage = per_pod_replicas(observation.status_replicas, total, rule.target_milli, tolerance)
    return MetricProposal(rule, replicas, usage / 1000.0, rule.target_milli / 1000.0, age)
