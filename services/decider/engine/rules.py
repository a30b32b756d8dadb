"""Composite rules: all/any conditions over metrics, tiered actions, priority and a re-check delay."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from services.decider.engine.aggregate import aggregate
from services.decider.engine.observation import Observation
from services.decider.engine.spec import ConditionSpec, RuleSpec

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(slots=True)
class RuleState:
    fired_at: dict[str, float] = field(default_factory=dict)
    """Rule name -> when it last fired (it is not re-checked before ``recheck_after_seconds``)."""
    true_since: dict[str, float] = field(default_factory=dict)
    """``rule/index`` -> since when that condition has held continuously."""


class ConditionResult(msgspec.Struct, frozen=True):
    condition: ConditionSpec
    value: float | None
    holds: bool
    held_for: float


class RuleVerdict(msgspec.Struct, frozen=True):
    rule: RuleSpec
    replicas: int
    conditions: tuple[ConditionResult, ...]


def _check(
    rule: RuleSpec, index: int, condition: ConditionSpec, observation: Observation, state: RuleState
) -> ConditionResult:
    value = aggregate(observation, condition.metric, condition.aggregate, condition.selector)
    key = f"{rule.name}/{index}"
    raw = value is not None and _COMPARE[condition.op](value, condition.value)
    if not raw:
        state.true_since.pop(key, None)
        return ConditionResult(condition, value, False, 0.0)
    since = state.true_since.setdefault(key, observation.now)
    held = observation.now - since
    return ConditionResult(condition, value, held >= condition.for_seconds, held)


def condition_crossed(rule: RuleSpec, observation: Observation) -> bool:
    """True when any condition of ``rule`` holds on this observation alone (for immediate evaluation)."""
    for condition in rule.conditions:
        value = aggregate(observation, condition.metric, condition.aggregate, condition.selector)
        if value is not None and _COMPARE[condition.op](value, condition.value):
            return True
    return False


def evaluate_rules(
    rules: tuple[RuleSpec, ...], observation: Observation, current: int, state: RuleState
) -> tuple[RuleVerdict | None, list[ConditionResult]]:
    """The firing rule of highest priority (earliest in the file on ties), and every condition checked."""
    checked: list[ConditionResult] = []
    winner: RuleVerdict | None = None
    for rule in sorted(rules, key=lambda r: -r.priority):
        results = tuple(_check(rule, i, c, observation, state) for i, c in enumerate(rule.conditions))
        checked.extend(results)
        if winner is not None:
            continue
        fired_at = state.fired_at.get(rule.name)
        if fired_at is not None and observation.now < fired_at + rule.recheck_after_seconds:
            continue
        holds = all(r.holds for r in results) if rule.mode == "all" else any(r.holds for r in results)
        if holds:
            winner = RuleVerdict(rule, rule.apply(current), results)
    if winner is not None:
        state.fired_at[winner.rule.name] = observation.now
    return winner, checked
