"""One evaluation of one target: the HPA's reconcile, with the scalebus extensions around it.

Order: pause -> scale to zero (KEDA) -> HPA bounds (ScalingDisabled, above max, below min) -> per-metric
proposals and panic mode -> invalid-metric refusal -> fallback -> composite rules -> normalization
(stabilization, rate limits, min/max) -> no scale-down while panicking -> scale event recorded.
Pure: no I/O, the time is ``observation.now``.  Mutates only ``state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from services.decider.engine.aggregate import has_failed_samples, newest_age
from services.decider.engine.keda import check_activation, fallback_replicas
from services.decider.engine.normalize import (
    HpaState,
    Recommendation,
    convert_desired_replicas_with_rules,
    convert_with_behavior_rate,
    normalize_with_behavior,
    normalize_without_behavior,
    record_initial_recommendation,
    store_scale_event,
)
from services.decider.engine.observation import Observation
from services.decider.engine.panic import PanicState, PanicVerdict, evaluate_panic
from services.decider.engine.replicas import MetricProposal, compute_proposal
from services.decider.engine.rules import RuleState, evaluate_rules
from services.decider.engine.spec import TargetPolicy
from shared.schemas import Adjustment, Explanation, MetricInput


@dataclass(slots=True)
class TargetState:
    """Everything the engine remembers about one target between evaluations."""

    hpa: HpaState = field(default_factory=HpaState)
    rules: RuleState = field(default_factory=RuleState)
    panic: PanicState = field(default_factory=PanicState)
    failures: int = 0
    """Consecutive evaluations with a failed metric (for fallback)."""
    last_active_at: float | None = None
    """Last time a scale-to-zero trigger was active (KEDA ``lastActiveTime``)."""


class Outcome(msgspec.Struct, frozen=True):
    target: str
    current: int
    desired: int
    reason: str
    message: str
    explanation: Explanation


class _Trace:
    """Collects the explanation while the evaluation runs."""

    __slots__ = ("adjustments", "conditions", "inputs", "raw", "winner")

    def __init__(self) -> None:
        self.inputs: list[MetricInput] = []
        self.adjustments: list[Adjustment] = []
        self.conditions: dict[str, str] = {}
        self.winner = ""
        self.raw = 0

    def adjust(self, stage: str, before: int, after: int, reason: str) -> None:
        if before != after:
            self.adjustments.append(Adjustment(stage=stage, before=before, after=after, reason=reason))


def _metric_input(proposal: MetricProposal) -> MetricInput:
    return MetricInput(
        metric=proposal.rule.description,
        value=proposal.usage,
        target=proposal.target,
        age_seconds=round(proposal.age_seconds, 3),
        proposal=proposal.replicas,
        note=proposal.error,
    )


def evaluate(policy: TargetPolicy, state: TargetState, observation: Observation) -> Outcome:
    """Decide the desired replicas of ``policy.target`` from ``observation``."""
    trace = _Trace()
    current = observation.spec_replicas
    desired, reason, message = _decide(policy, state, observation, trace)
    message = _with_winner(trace, message)
    if desired != current:
        store_scale_event(state.hpa, policy.behavior, current, desired, observation.now)
    explanation = Explanation(
        policy=policy.name,
        inputs=tuple(trace.inputs),
        winner=trace.winner,
        raw_recommendation=trace.raw,
        adjustments=tuple(trace.adjustments),
        conditions=trace.conditions,
    )
    return Outcome(policy.target, current, desired, reason, message, explanation)


def _with_winner(trace: _Trace, message: str) -> str:
    """Lead the message with the input that won: ``pods metric qps 14.2 (target 5) -> 3; <message>``."""
    for item in trace.inputs:
        if item.metric == trace.winner and item.proposal is not None:
            return f"{item.metric} {item.value:.4g} (target {item.target:.4g}) -> {item.proposal}; {message}"
    return message


def _decide(policy: TargetPolicy, state: TargetState, obs: Observation, trace: _Trace) -> tuple[int, str, str]:
    now = obs.now
    current = obs.spec_replicas
    trace.raw = current
    if policy.paused:
        trace.conditions["AbleToScale"] = "Paused"
        if policy.paused_replicas is not None and policy.paused_replicas != current:
            trace.winner, trace.raw = "pausedReplicas", policy.paused_replicas
            trace.adjust("paused", current, policy.paused_replicas, "Paused")
            return policy.paused_replicas, "Paused", f"paused at {policy.paused_replicas} replicas"
        return current, "Paused", "scaling is paused for this target"
    minimum = policy.min_replicas
    stz = policy.scale_to_zero
    cooling_down = False
    if stz is not None:
        activation = check_activation(stz, obs)
        for metric, value, threshold in activation.values:
            trace.inputs.append(
                MetricInput(
                    metric=f"activation {metric}",
                    value=value if value is not None else 0.0,
                    target=threshold,
                    age_seconds=round(newest_age(obs, metric), 3),
                    note="no samples" if value is None else ("active" if value > threshold else "inactive"),
                )
            )
        if activation.active or state.last_active_at is None:
            state.last_active_at = now
        minimum = max(minimum, 1)
        idle = stz.idle_replicas
        if activation.active and current <= idle:
            target = min(max(minimum, 1), policy.max_replicas)
            trace.winner, trace.raw = "activation", target
            trace.adjust("activation", current, target, "ActivatedFromZero")
            trace.conditions["ScalingActive"] = "ActivatedFromZero"
            return target, "ActivatedFromZero", f"a trigger is above its activation threshold; scaling from {current}"
        if not activation.active:
            if current <= idle:
                trace.conditions["ScalingActive"] = "ScaledToZero"
                return current, "ScaledToZero", "no trigger is active; staying at the idle replica count"
            inactive_for = now - state.last_active_at
            if inactive_for >= stz.cooldown_period_seconds:
                trace.winner, trace.raw = "cooldown", idle
                trace.adjust("cooldown", current, idle, "ScaleToZero")
                trace.conditions["ScalingActive"] = "ScaleToZero"
                return (
                    idle,
                    "ScaleToZero",
                    f"no trigger active for {inactive_for:.0f}s (cooldown {stz.cooldown_period_seconds:g}s)",
                )
            cooling_down = True
    record_initial_recommendation(state.hpa, current, now)
    maximum = policy.max_replicas
    if current == 0 and minimum != 0:
        trace.conditions["ScalingActive"] = "ScalingDisabled"
        return 0, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero"
    if current > maximum:
        trace.adjust("bounds", current, maximum, "TooManyReplicas")
        return maximum, "TooManyReplicas", "current number of replicas above maxReplicas"
    if current < minimum:
        trace.adjust("bounds", current, minimum, "TooFewReplicas")
        return minimum, "TooFewReplicas", "current number of replicas below minReplicas"
    return _reconcile(policy, state, obs, trace, minimum, cooling_down)


def _reconcile(
    policy: TargetPolicy, state: TargetState, obs: Observation, trace: _Trace, minimum: int, cooling_down: bool
) -> tuple[int, str, str]:
    now = obs.now
    current = obs.spec_replicas
    maximum = policy.max_replicas
    proposals = [compute_proposal(rule, obs, policy.tolerance, policy.settings) for rule in policy.metrics]
    trace.inputs.extend(_metric_input(p) for p in proposals)
    replicas = 0
    first_invalid: MetricProposal | None = None
    invalid = 0
    for proposal in proposals:
        if proposal.replicas is None:
            invalid += 1
            first_invalid = first_invalid or proposal
        elif replicas == 0 or proposal.replicas > replicas:
            replicas, trace.winner = proposal.replicas, proposal.rule.description
    panic: PanicVerdict | None = None
    if policy.panic is not None:
        panic = evaluate_panic(policy.panic, obs, obs.ready_running_pods, state.panic)
        trace.inputs.append(
            MetricInput(
                metric=f"panic {policy.panic.metric}",
                value=panic.panic_average if panic.panicking else panic.stable_average,
                target=policy.panic.target_per_replica,
                age_seconds=round(newest_age(obs, policy.panic.metric), 3),
                proposal=panic.replicas,
                note=panic.note,
            )
        )
        trace.conditions["Panic"] = "Panicking" if panic.panicking else "Stable"
        if panic.replicas is None:
            invalid += 1
        elif replicas == 0 or panic.replicas > replicas:
            replicas, trace.winner = panic.replicas, f"panic {policy.panic.metric}"
    sources = len(proposals) + (1 if policy.panic is not None else 0)
    failed = invalid > 0 or has_failed_samples(obs, policy.watched_metrics)
    state.failures = state.failures + 1 if failed else 0

    verdict = None
    if policy.rules:
        verdict, checked = evaluate_rules(policy.rules, obs, current, state.rules)
        for result in checked:
            trace.inputs.append(
                MetricInput(
                    metric=result.condition.key,
                    value=result.value if result.value is not None else 0.0,
                    target=result.condition.value,
                    age_seconds=round(newest_age(obs, result.condition.metric), 3),
                    note=("holds" if result.holds else "does not hold")
                    + (f" for {result.held_for:.0f}s" if result.held_for else "")
                    + (" (no samples)" if result.value is None else ""),
                )
            )

    fallback = policy.fallback
    if fallback is not None and state.failures >= fallback.failure_threshold:
        target = fallback_replicas(fallback, current)
        bounded = min(max(target, minimum), maximum)
        trace.winner, trace.raw = "fallback", target
        trace.adjust("bounds", target, bounded, "TooFewReplicas" if bounded > target else "TooManyReplicas")
        trace.conditions["ScalingActive"] = "FallbackReplicas"
        return bounded, "FallbackReplicas", f"{state.failures} consecutive metric failures; serving fallback replicas"

    if verdict is not None:
        raw = verdict.replicas
        trace.winner, trace.raw = f"rule {verdict.rule.name} ({verdict.rule.action_text})", raw
        trace.conditions["ScalingActive"] = "RuleFired"
        state.hpa.recommendations.append(Recommendation(raw, now))
        if policy.behavior is not None:
            desired, limited, message = convert_with_behavior_rate(
                state.hpa, policy.behavior, current, raw, minimum, maximum, now
            )
        else:
            desired, limited, message = convert_desired_replicas_with_rules(current, raw, minimum, maximum)
        trace.adjust("rate" if limited in ("ScaleUpLimit", "ScaleDownLimit") else "bounds", raw, desired, limited)
        trace.conditions["ScalingLimited"] = limited
        desired = _hold_while_panicking(panic, current, desired, trace)
        return desired, limited, f"rule {verdict.rule.name} fired: {message}"

    if sources == 0:
        replicas, trace.winner = current, "no metrics"
    elif invalid >= sources or (invalid > 0 and replicas < current):
        reason = first_invalid.rule.condition_reason if first_invalid is not None else "FailedGetPanicMetric"
        error = first_invalid.error if first_invalid is not None else "panic metric has no samples"
        trace.conditions["ScalingActive"] = reason
        return current, reason, f"invalid metrics ({invalid} invalid out of {sources}), first error is: {error}"
    trace.conditions["ScalingActive"] = "ValidMetricFound"
    trace.raw = replicas
    if policy.behavior is None:
        normalized = normalize_without_behavior(
            state.hpa, current, replicas, minimum, maximum, now, policy.settings.downscale_stabilization_seconds
        )
    else:
        normalized = normalize_with_behavior(state.hpa, policy.behavior, current, replicas, minimum, maximum, now)
    trace.adjust("stabilization", replicas, normalized.stabilized, normalized.able_to_scale)
    trace.adjust(
        "rate" if normalized.limited in ("ScaleUpLimit", "ScaleDownLimit") else "bounds",
        normalized.stabilized,
        normalized.replicas,
        normalized.limited,
    )
    trace.conditions["AbleToScale"] = normalized.able_to_scale
    trace.conditions["ScalingLimited"] = normalized.limited
    desired = _hold_while_panicking(panic, current, normalized.replicas, trace)
    if normalized.limited != "DesiredWithinRange":
        reason, message = normalized.limited, normalized.message
    elif normalized.able_to_scale != "ReadyForNewScale":
        reason, message = normalized.able_to_scale, "recent recommendations differ; applying the stabilized one"
    else:
        reason, message = "DesiredWithinRange", normalized.message
    if desired == current and panic is not None and panic.panicking and normalized.replicas < current:
        reason = "PanicMode"
    if cooling_down:
        message += " (no trigger active; cooldown running)"
    return desired, reason, message


def _hold_while_panicking(panic: PanicVerdict | None, current: int, desired: int, trace: _Trace) -> int:
    if panic is not None and panic.panicking and desired < current:
        trace.adjust("panic", desired, current, "no scale-down while panicking")
        return current
    return desired
