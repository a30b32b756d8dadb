"""Offline replay: ``scalebus simulate --policy FILE --trace FILE [--plot out.png]``.

Runs the decider's engine (the same ``evaluate`` the service runs; no NATS) over a JSON-lines trace of
observations and prints one JSON line per decision step.  The trace format is documented in
``docs/trace-format.md``.  Without ``replicas`` in a trace line the target follows the previous decision,
as an ideal actuator would.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from services.decider.engine.evaluate import Outcome, TargetState, evaluate
from services.decider.engine.observation import Observation, Pod
from services.decider.engine.spec import ControllerSettings, TargetPolicy
from services.decider.policy.loader import load_policy_file
from shared.config import ConfigError
from shared.schemas import MetricSample

Quality = Literal["ok", "stale", "error"]


class TracePod(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    ready: bool | None = True
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] = "Running"
    deleting: bool = False
    started: float | None = None
    """Start time (same time base as ``time``); default: long before the trace."""
    ready_since: float | None = None
    """Last readiness transition; default: the start time."""
    metrics: dict[str, float] = msgspec.field(default_factory=dict)
    """Per-pod samples: ``{"cpu": 0.4, "cpu_request": 1.0, "qps": 12}``."""
    sample_time: float | None = None


class TraceStep(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One line of a trace: what the decider would know at ``time``."""

    time: float
    target: str = ""
    replicas: int | None = None
    """Current (spec) replicas; omitted: the previous step's decision."""
    pods: list[TracePod] | None = None
    """Explicit pods; omitted: ``replicas`` ready, running pods named ``<target>-<i>``."""
    metrics: dict[str, float] = msgspec.field(default_factory=dict)
    """Target-level samples (External/Object metrics, rule and activation inputs)."""
    per_pod: dict[str, float] = msgspec.field(default_factory=dict)
    """The same value for every running pod."""
    spread: dict[str, float] = msgspec.field(default_factory=dict)
    """A total split evenly across the ready pods (load that does not grow with replicas)."""
    quality: Quality = "ok"
    load: float | None = None
    """What ``--plot`` draws as load; default: the sum of the step's first metric."""


@dataclass
class StepResult:
    time: float
    target: str
    load: float
    outcome: Outcome


@dataclass
class Replay:
    policies: dict[str, TargetPolicy]
    states: dict[str, TargetState] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    epoch: float = 1_700_000_000.0
    """Trace times are offsets from this instant (large enough for negative start times)."""

    def run(self, steps: Iterator[TraceStep]) -> Iterator[StepResult]:
        for step in steps:
            target = step.target or self._only_target()
            policy = self.policies.get(target)
            if policy is None:
                raise ValueError(f"no policy for target {target!r} (policies: {sorted(self.policies)})")
            current = step.replicas if step.replicas is not None else self.replicas.get(target, policy.min_replicas)
            observation, load = self._observe(step, target, current, policy)
            outcome = evaluate(policy, self.states.setdefault(target, TargetState()), observation)
            self.replicas[target] = outcome.desired
            yield StepResult(step.time, target, load, outcome)

    def _only_target(self) -> str:
        if len(self.policies) != 1:
            raise ValueError("the trace line has no target and the policy file holds several targets")
        return next(iter(self.policies))

    def _observe(self, step: TraceStep, target: str, current: int, policy: TargetPolicy) -> tuple[Observation, float]:
        now = self.epoch + step.time
        long_ago = now - 3600.0
        pods_in = step.pods if step.pods is not None else [TracePod(name=f"{target}-{i}") for i in range(current)]
        ready_count = sum(1 for p in pods_in if p.ready and p.phase == "Running" and not p.deleting)
        pods: list[Pod] = []
        samples: list[MetricSample] = []
        for trace_pod in pods_in:
            started = self.epoch + trace_pod.started if trace_pod.started is not None else long_ago
            since = self.epoch + trace_pod.ready_since if trace_pod.ready_since is not None else started
            pods.append(
                Pod(
                    name=trace_pod.name,
                    phase=trace_pod.phase,
                    ready=trace_pod.ready,
                    started_at=started,
                    ready_changed_at=since,
                    deleting=trace_pod.deleting,
                )
            )
            stamp = self.epoch + trace_pod.sample_time if trace_pod.sample_time is not None else now
            values = dict(trace_pod.metrics)
            if trace_pod.phase == "Running" and not trace_pod.deleting:
                values = {**step.per_pod, **values}
                if trace_pod.ready and ready_count:
                    values = {**{k: v / ready_count for k, v in step.spread.items()}, **values}
            samples.extend(
                MetricSample(
                    name=name, value=value, timestamp=stamp, labels={"pod": trace_pod.name}, quality=step.quality
                )
                for name, value in values.items()
            )
        samples.extend(
            MetricSample(name=name, value=value, timestamp=now, quality=step.quality)
            for name, value in step.metrics.items()
        )
        observation = Observation(
            now=now, spec_replicas=current, status_replicas=len(pods_in), pods=pods, samples=samples, samples_at=now
        )
        return observation, self._load(step, policy, samples)

    @staticmethod
    def _load(step: TraceStep, policy: TargetPolicy, samples: Sequence[MetricSample]) -> float:
        if step.load is not None:
            return step.load
        if step.spread:
            return float(sum(step.spread.values()))
        names = [m.metric for m in policy.metrics] or sorted(policy.watched_metrics)
        for name in names:
            values = [s.value for s in samples if s.name == name]
            if values:
                return float(math.fsum(values))
        return 0.0


def read_trace(path: Path) -> Iterator[TraceStep]:
    decoder = msgspec.json.Decoder(TraceStep)
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.lstrip().startswith(b"#"):
                continue
            try:
                yield decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from exc


def result_line(result: StepResult) -> dict[str, Any]:
    outcome = result.outcome
    explanation = outcome.explanation
    return {
        "time": result.time,
        "target": result.target,
        "current": outcome.current,
        "desired": outcome.desired,
        "reason": outcome.reason,
        "winner": explanation.winner,
        "raw": explanation.raw_recommendation,
        "load": round(result.load, 6),
        "adjustments": [msgspec.to_builtins(a) for a in explanation.adjustments],
        "message": outcome.message,
    }


def plot(results: list[StepResult], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, load_axis = plt.subplots(figsize=(10, 4.5))
    targets = sorted({r.target for r in results})
    replica_axis = load_axis.twinx()
    for target in targets:
        mine = [r for r in results if r.target == target]
        times = [r.time for r in mine]
        load_axis.plot(times, [r.load for r in mine], color="tab:blue", alpha=0.6, label=f"{target} load")
        replica_axis.step(
            times, [r.outcome.current for r in mine], where="post", color="tab:gray", label=f"{target} current"
        )
        replica_axis.step(
            times, [r.outcome.desired for r in mine], where="post", color="tab:red", label=f"{target} desired"
        )
    load_axis.set_xlabel("time (s)")
    load_axis.set_ylabel("load")
    replica_axis.set_ylabel("replicas")
    handles = load_axis.get_legend_handles_labels()[0] + replica_axis.get_legend_handles_labels()[0]
    labels = load_axis.get_legend_handles_labels()[1] + replica_axis.get_legend_handles_labels()[1]
    load_axis.legend(handles, labels, loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(out, format="png")
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scalebus simulate", description="Replay a trace through a scaling policy, offline."
    )
    parser.add_argument("--policy", required=True, type=Path, help="policy YAML file (one or more documents)")
    parser.add_argument("--trace", required=True, type=Path, help="JSON-lines trace (docs/trace-format.md)")
    parser.add_argument("--plot", type=Path, help="write load and replicas over time as a PNG")
    args = parser.parse_args(argv)
    try:
        policies = {p.target: p for p in load_policy_file(args.policy, ControllerSettings())}
    except ConfigError as exc:
        print(f"scalebus simulate: invalid policy: {exc}", file=sys.stderr)
        return 2
    if not args.trace.is_file():
        print(f"scalebus simulate: trace not found: {args.trace}", file=sys.stderr)
        return 2
    results: list[StepResult] = []
    try:
        for result in Replay(policies).run(read_trace(args.trace)):
            results.append(result)
            sys.stdout.write(json.dumps(result_line(result)) + "\n")
    except ValueError as exc:
        print(f"scalebus simulate: {exc}", file=sys.stderr)
        return 2
    if args.plot is not None:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
