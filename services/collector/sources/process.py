"""CPU (cores in use) and memory (resident bytes) of a target's local replica processes.

With `cpu_request` / `memory_request` configured, each measured replica also gets those requests
as `cpu_request` / `memory_request` samples (local processes have none of their own), so
utilization policies work on local targets as on Kubernetes ones.

The pids come from the actuator's TargetStatus.  CPU is the increase of the processes' CPU time
between two collections divided by the wall time between them, so a replica's first collection
reports memory only.  psutil reads /proc synchronously, so measuring runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import psutil

from services.collector.config import ProcessSourceConfig
from services.collector.samples import error_sample
from services.collector.sources.base import SourceContext
from shared.schemas import MetricSample


@dataclass(frozen=True)
class ProcessUsage:
    """CPU seconds used so far and resident memory of a process (and its children)."""

    cpu_seconds: float
    memory_bytes: float


def measure(pid: int, include_children: bool) -> ProcessUsage:
    """Read a process's usage; raises psutil.Error when it is gone or not accessible."""
    process = psutil.Process(pid)
    with process.oneshot():
        times = process.cpu_times()
        cpu = times.user + times.system
        memory = float(process.memory_info().rss)
        children = process.children(recursive=True) if include_children else []
    for child in children:
        try:
            child_times = child.cpu_times()
            cpu += child_times.user + child_times.system
            memory += child.memory_info().rss
        except psutil.Error:
            continue  # a child that just exited
    return ProcessUsage(cpu_seconds=cpu, memory_bytes=memory)


class ProcessSource:
    """Per-pod `cpu` and `memory` samples of local replica processes."""

    def __init__(self, config: ProcessSourceConfig, context: SourceContext) -> None:
        self._config = config
        self._context = context
        self._previous: dict[tuple[str, int], tuple[float, float]] = {}
        cpu_request = f"{config.cpu_name}_request"
        self._requests = [
            (name, value, "cores" if name == cpu_request else "bytes") for name, value in config.requests.items()
        ]
        """(sample name, value, unit) of each configured per-replica request."""
        self.metric_names = (config.cpu_name, config.memory_name, *(name for name, _, _ in self._requests))

    @property
    def name(self) -> str:
        return self._config.name

    async def collect(self) -> list[MetricSample]:
        replicas = [r for r in self._context.replicas.replicas(self._context.target) if r.pid > 0]
        pids = [(replica.name, replica.pid) for replica in replicas]
        measured = await asyncio.to_thread(self._measure_all, pids)
        now = self._context.clock.now()
        samples: list[MetricSample] = []
        previous, self._previous = self._previous, {}
        for (pod, pid), usage in zip(pids, measured, strict=True):
            labels = {"pod": pod}
            if isinstance(usage, str):
                samples.extend(
                    error_sample(name, source=self.name, error=usage, timestamp=now, labels=labels)
                    for name in (self._config.cpu_name, self._config.memory_name)
                )
                continue
            self._previous[(pod, pid)] = (now, usage.cpu_seconds)
            before = previous.get((pod, pid))
            if before is not None and now > before[0] and usage.cpu_seconds >= before[1]:
                cores = (usage.cpu_seconds - before[1]) / (now - before[0])
                samples.append(self._sample(self._config.cpu_name, cores, "cores", labels, now))
            samples.append(self._sample(self._config.memory_name, usage.memory_bytes, "bytes", labels, now))
            samples.extend(self._sample(name, value, unit, labels, now) for name, value, unit in self._requests)
        return samples

    def _measure_all(self, pids: list[tuple[str, int]]) -> list[ProcessUsage | str]:
        results: list[ProcessUsage | str] = []
        for _, pid in pids:
            try:
                results.append(measure(pid, self._config.include_children))
            except psutil.NoSuchProcess:
                results.append(f"process {pid} is gone")
            except psutil.Error as exc:
                results.append(f"cannot read process {pid}: {type(exc).__name__}")
        return results

    def _sample(self, name: str, value: float, unit: str, labels: dict[str, str], now: float) -> MetricSample:
        return MetricSample(name=name, value=value, timestamp=now, unit=unit, labels=labels, source=self.name)

    async def close(self) -> None:
        self._previous.clear()
