"""Turn a validated policy document into the engine's TargetPolicy, filling the HPA's defaults.

Semantic checks (a target type without its value, two actions in one rule, ...) raise ConfigError with
the file, the field path and the reason, like schema errors do.
"""

from __future__ import annotations

import math
import re

from services.decider.engine.spec import (
    ActivationSpec,
    Behavior,
    ConditionSpec,
    ControllerSettings,
    FallbackSpec,
    MetricRule,
    PanicSpec,
    RateLimit,
    Requirement,
    RuleSpec,
    ScaleToZeroSpec,
    ScalingRules,
    Selector,
    TargetPolicy,
    Tolerance,
)
from services.decider.policy.model import (
    HorizontalPodAutoscalerBehavior,
    HPAScalingRules,
    LabelSelector,
    MetricSpec,
    MetricTarget,
    PolicyDocument,
    Quantity,
    Rule,
)
from shared.config import ConfigError
from shared.quantity import QuantityError, parse_quantity

TARGET_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?(/[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?)?$")

SCALE_UP_DEFAULT = ScalingRules(
    stabilization_window_seconds=0,
    select_policy="Max",
    policies=(RateLimit("Pods", 4, 15), RateLimit("Percent", 100, 15)),
)
SCALE_DOWN_DEFAULT_POLICIES = (RateLimit("Percent", 100, 15),)


class _Compiler:
    def __init__(self, file: str, prefix: str, settings: ControllerSettings) -> None:
        self.file = file
        self.prefix = prefix
        self.settings = settings

    def error(self, field: str, reason: str) -> ConfigError:
        return ConfigError(self.file, f"{self.prefix}{field}", reason)

    def quantity(self, value: Quantity, field: str) -> float:
        try:
            number = parse_quantity(value)
        except QuantityError as exc:
            raise self.error(field, str(exc)) from exc
        if not math.isfinite(number) or number < 0:
            raise self.error(field, "must be a finite, non-negative quantity")
        return number

    def milli(self, value: Quantity, field: str) -> int:
        milli = math.ceil(self.quantity(value, field) * 1000.0 - 1e-9)  # resource.Quantity.MilliValue rounds up
        if milli <= 0:
            raise self.error(field, "must be greater than zero")
        return milli

    def selector(self, selector: LabelSelector | None) -> Selector | None:
        if selector is None:
            return None
        return Selector(
            match_labels=tuple(sorted(selector.match_labels.items())),
            requirements=tuple(
                Requirement(req.key, req.operator, frozenset(req.values)) for req in selector.match_expressions
            ),
        )

    def target_milli(self, target: MetricTarget, kind: str, field: str) -> int:
        if kind == "Value":
            if target.value is None:
                raise self.error(f"{field}.value", "required when target.type is Value")
            return self.milli(target.value, f"{field}.value")
        if target.average_value is None:
            raise self.error(f"{field}.averageValue", "required when target.type is AverageValue")
        return self.milli(target.average_value, f"{field}.averageValue")

    def metric(self, spec: MetricSpec, field: str) -> MetricRule:
        if spec.type in ("Resource", "ContainerResource"):
            source = spec.resource if spec.type == "Resource" else spec.container_resource
            key = "resource" if spec.type == "Resource" else "containerResource"
            if source is None:
                raise self.error(f"{field}.{key}", f"required when type is {spec.type}")
            container = getattr(source, "container", "")
            reason = "FailedGetResourceMetric" if spec.type == "Resource" else "FailedGetContainerResourceMetric"
            word = "resource" if spec.type == "Resource" else "container resource"
            target = source.target
            tfield = f"{field}.{key}.target"
            if target.type == "Utilization":
                if target.average_utilization is None:
                    raise self.error(f"{tfield}.averageUtilization", "required when target.type is Utilization")
                return MetricRule(
                    kind="resource_utilization",
                    metric=source.name,
                    description=f"{source.name} {word} utilization (percentage of request)",
                    target_utilization=target.average_utilization,
                    request_metric=f"{source.name}_request",
                    is_cpu=source.name == "cpu",
                    container=container,
                    condition_reason=reason,
                )
            if target.type != "AverageValue":
                raise self.error(f"{tfield}.type", "a resource metric takes Utilization or AverageValue")
            return MetricRule(
                kind="resource_average_value",
                metric=source.name,
                description=f"{source.name} {word}",
                target_milli=self.target_milli(target, "AverageValue", tfield),
                is_cpu=source.name == "cpu",
                container=container,
                condition_reason=reason,
            )
        if spec.type == "Pods":
            if spec.pods is None:
                raise self.error(f"{field}.pods", "required when type is Pods")
            tfield = f"{field}.pods.target"
            if spec.pods.target.type != "AverageValue":
                raise self.error(f"{tfield}.type", "a Pods metric takes AverageValue")
            return MetricRule(
                kind="pods_average_value",
                metric=spec.pods.metric.name,
                description=f"pods metric {spec.pods.metric.name}",
                target_milli=self.target_milli(spec.pods.target, "AverageValue", tfield),
                selector=self.selector(spec.pods.metric.selector),
                condition_reason="FailedGetPodsMetric",
            )
        if spec.type == "Object":
            if spec.object is None:
                raise self.error(f"{field}.object", "required when type is Object")
            source_obj = spec.object
            tfield = f"{field}.object.target"
            kind = source_obj.target.type
            if kind == "Utilization":
                raise self.error(f"{tfield}.type", "an Object metric takes Value or AverageValue")
            return MetricRule(
                kind="object_value" if kind == "Value" else "object_average_value",
                metric=source_obj.metric.name,
                description=f"{source_obj.described_object.kind or 'object'} metric {source_obj.metric.name}",
                target_milli=self.target_milli(source_obj.target, kind, tfield),
                selector=self.selector(source_obj.metric.selector),
                condition_reason="FailedGetObjectMetric",
            )
        if spec.external is None:
            raise self.error(f"{field}.external", "required when type is External")
        tfield = f"{field}.external.target"
        kind = spec.external.target.type
        if kind == "Utilization":
            raise self.error(f"{tfield}.type", "an External metric takes Value or AverageValue")
        return MetricRule(
            kind="external_value" if kind == "Value" else "external_average_value",
            metric=spec.external.metric.name,
            description=f"external metric {spec.external.metric.name}",
            target_milli=self.target_milli(spec.external.target, kind, tfield),
            selector=self.selector(spec.external.metric.selector),
            condition_reason="FailedGetExternalMetric",
        )

    def scaling_rules(self, rules: HPAScalingRules | None, default: ScalingRules, field: str) -> ScalingRules:
        if rules is None:
            return default
        if rules.policies is not None and not rules.policies and rules.select_policy != "Disabled":
            raise self.error(f"{field}.policies", "must not be empty unless selectPolicy is Disabled")
        policies = (
            tuple(RateLimit(p.type, p.value, p.period_seconds) for p in rules.policies)
            if rules.policies is not None
            else default.policies
        )
        return ScalingRules(
            stabilization_window_seconds=(
                rules.stabilization_window_seconds
                if rules.stabilization_window_seconds is not None
                else default.stabilization_window_seconds
            ),
            select_policy=rules.select_policy or default.select_policy,
            policies=policies,
        )

    def behavior(self, behavior: HorizontalPodAutoscalerBehavior | None) -> Behavior | None:
        if behavior is None:
            return None
        down_default = ScalingRules(
            stabilization_window_seconds=int(self.settings.downscale_stabilization_seconds),
            select_policy="Max",
            policies=SCALE_DOWN_DEFAULT_POLICIES,
        )
        return Behavior(
            scale_up=self.scaling_rules(behavior.scale_up, SCALE_UP_DEFAULT, "spec.behavior.scaleUp"),
            scale_down=self.scaling_rules(behavior.scale_down, down_default, "spec.behavior.scaleDown"),
        )

    def tolerance(self, behavior: HorizontalPodAutoscalerBehavior | None) -> Tolerance:
        up = down = self.settings.tolerance
        if behavior is not None:
            if behavior.scale_up is not None and behavior.scale_up.tolerance is not None:
                up = self.quantity(behavior.scale_up.tolerance, "spec.behavior.scaleUp.tolerance")
            if behavior.scale_down is not None and behavior.scale_down.tolerance is not None:
                down = self.quantity(behavior.scale_down.tolerance, "spec.behavior.scaleDown.tolerance")
        return Tolerance(up=up, down=down)

    def rule(self, rule: Rule, field: str) -> RuleSpec:
        groups = [(name, value) for name, value in (("all", rule.when.all), ("any", rule.when.any)) if value]
        if len(groups) != 1:
            raise self.error(f"{field}.when", "give exactly one non-empty list: all or any")
        mode, conditions = groups[0]
        actions = [
            (k, v)
            for k, v in (
                ("add", rule.action.add),
                ("remove", rule.action.remove),
                ("multiply", rule.action.multiply),
                ("set", rule.action.set),
            )
            if v is not None
        ]
        if len(actions) != 1:
            raise self.error(f"{field}.action", "give exactly one of add, remove, multiply, set")
        action, amount = actions[0]
        return RuleSpec(
            name=rule.name,
            mode=mode,  # type: ignore[arg-type]
            conditions=tuple(
                ConditionSpec(c.metric, c.op, c.value, c.aggregate, c.for_seconds, self.selector(c.selector))
                for c in conditions
            ),
            action=action,  # type: ignore[arg-type]
            amount=float(amount),
            priority=rule.priority,
            recheck_after_seconds=rule.recheck_after_seconds,
        )


def target_name(document: PolicyDocument) -> str:
    name = document.spec.scale_target_ref.name
    namespace = document.metadata.namespace
    return f"{namespace}/{name}" if namespace else name


def compile_policy(
    document: PolicyDocument, *, file: str, settings: ControllerSettings, prefix: str = ""
) -> TargetPolicy:
    """Validate the semantics of one document and build its TargetPolicy."""
    compiler = _Compiler(file, prefix, settings)
    spec = document.spec
    target = target_name(document)
    if not TARGET_PATTERN.match(target):
        raise compiler.error(
            "spec.scaleTargetRef.name", f"target {target!r} is not a valid scalebus target name (lowercase DNS label)"
        )
    minimum = 1 if spec.min_replicas is None else spec.min_replicas
    if minimum > spec.max_replicas:
        raise compiler.error("spec.minReplicas", f"{minimum} is greater than maxReplicas {spec.max_replicas}")
    if minimum == 0 and spec.scale_to_zero is None and not any(m.type in ("Object", "External") for m in spec.metrics):
        raise compiler.error("spec.minReplicas", "0 needs an Object or External metric, or scaleToZero")
    metrics = tuple(compiler.metric(m, f"spec.metrics[{i}]") for i, m in enumerate(spec.metrics))
    rules = tuple(compiler.rule(r, f"spec.rules[{i}]") for i, r in enumerate(spec.rules))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise compiler.error("spec.rules", "rule names must be unique")
    stz = None
    if spec.scale_to_zero is not None:
        s = spec.scale_to_zero
        stz = ScaleToZeroSpec(
            triggers=tuple(ActivationSpec(t.metric, t.threshold, t.aggregate) for t in s.triggers),
            cooldown_period_seconds=s.cooldown_period_seconds,
            idle_replicas=s.idle_replica_count,
        )
        if s.idle_replica_count >= max(minimum, 1):
            raise compiler.error("spec.scaleToZero.idleReplicaCount", "must be less than minReplicas (and than 1)")
    panic = None
    if spec.panic is not None:
        p = spec.panic
        panic = PanicSpec(
            metric=p.metric,
            target_per_replica=p.target_per_replica,
            aggregate=p.aggregate,
            stable_window_seconds=p.stable_window_seconds,
            panic_window_percentage=p.panic_window_percentage,
            panic_threshold_percentage=p.panic_threshold_percentage,
            max_scale_up_rate=p.max_scale_up_rate,
            max_scale_down_rate=p.max_scale_down_rate,
            scale_down_delay_seconds=p.scale_down_delay_seconds,
        )
    fallback = None
    if spec.fallback is not None:
        fallback = FallbackSpec(spec.fallback.failure_threshold, spec.fallback.replicas, spec.fallback.behavior)
    watched = {m.metric for m in metrics} | {m.request_metric for m in metrics if m.request_metric}
    watched |= {c.metric for r in rules for c in r.conditions}
    if panic is not None:
        watched.add(panic.metric)
    if not metrics and not rules and panic is None and stz is None and not spec.paused:
        raise compiler.error("spec.metrics", "a policy needs at least one metric, rule or panic section")
    name = document.metadata.name
    if document.metadata.namespace:
        name = f"{document.metadata.namespace}/{name}"
    return TargetPolicy(
        name=name,
        target=target,
        min_replicas=minimum,
        max_replicas=spec.max_replicas,
        metrics=metrics,
        behavior=compiler.behavior(spec.behavior),
        tolerance=compiler.tolerance(spec.behavior),
        paused=spec.paused,
        paused_replicas=spec.paused_replicas,
        rules=rules,
        scale_to_zero=stz,
        panic=panic,
        fallback=fallback,
        source=file,
        settings=settings,
        watched_metrics=frozenset(watched),
    )
