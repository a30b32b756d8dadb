"""What the engine sees of a target at one moment: its pods, its spec/status replicas and its samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from shared.schemas import MetricSample, ReplicaStatus, TargetStatus

IGNORED_PHASES = frozenset({"Failed"})
"""Phases whose pods the HPA (v1.28) ignores, besides pods being deleted."""


class Pod(msgspec.Struct, frozen=True):
    """A replica with the fields the HPA's pod grouping reads."""

    name: str
    phase: str = "Running"
    ready: bool | None = True
    """None: the pod has no Ready condition yet."""
    started_at: float | None = 0.0
    """None: the pod has no start time yet."""
    ready_changed_at: float = 0.0
    """Last transition time of the Ready condition."""
    deleting: bool = False

    @classmethod
    def from_replica(cls, replica: ReplicaStatus) -> Pod:
        started = replica.started_at if replica.started_at > 0 else None
        transition = replica.ready_changed_at if replica.ready_changed_at > 0 else (started or 0.0)
        return cls(
            name=replica.name,
            phase="Running" if replica.phase == "Terminating" else replica.phase,
            ready=replica.ready,
            started_at=started,
            ready_changed_at=transition,
            deleting=replica.phase == "Terminating",
        )


@dataclass(slots=True)
class Observation:
    """The inputs of one evaluation of one target."""

    now: float
    spec_replicas: int
    """Replicas the target is set to (the HPA's ``scale.Spec.Replicas``)."""
    status_replicas: int
    """Replicas that exist (the HPA's ``scale.Status.Replicas``)."""
    pods: Sequence[Pod] = ()
    samples: Sequence[MetricSample] = ()
    samples_at: float = 0.0
    """When the snapshot was collected (0 when there is none)."""
    _by_name: dict[str, list[MetricSample]] | None = field(default=None, repr=False)
    _failed: frozenset[str] = field(default=frozenset(), repr=False)
    """Names of the metrics with a sample whose quality is not ok (built with the index)."""

    def samples_named(self, name: str) -> Sequence[MetricSample]:
        """The samples of one metric (indexed once per observation)."""
        index = self._by_name
        if index is None:
            index = self._index()
        return index.get(name, ())

    def has_failed(self, names: frozenset[str]) -> bool:
        """True when a sample of one of ``names`` carries a quality other than ok."""
        if self._by_name is None:
            self._index()
        return not self._failed.isdisjoint(names)

    def _index(self) -> dict[str, list[MetricSample]]:
        index: dict[str, list[MetricSample]] = {}
        failed: set[str] = set()
        for sample in self.samples:
            name = sample.name
            same = index.get(name)
            if same is None:
                index[name] = [sample]
            else:
                same.append(sample)
            if sample.quality != "ok":
                failed.add(name)
        self._by_name = index
        self._failed = frozenset(failed)
        return index

    @property
    def ready_running_pods(self) -> int:
        return sum(1 for pod in self.pods if pod.phase == "Running" and pod.ready and not pod.deleting)

    @classmethod
    def from_status(
        cls,
        now: float,
        status: TargetStatus,
        samples: Sequence[MetricSample] = (),
        samples_at: float = 0.0,
    ) -> Observation:
        pods = [Pod.from_replica(r) for r in status.replicas]
        if not pods and status.current_replicas:
            # A backend that reports counts but no replica list: the pods are those the samples name,
            # taken as running and ready (missing/unready adjustments then cannot apply).
            names = sorted({s.labels["pod"] for s in samples if "pod" in s.labels})
            pods = [Pod(name=name) for name in names]
        return cls(
            now=now,
            spec_replicas=status.spec_replicas,
            status_replicas=status.current_replicas,
            pods=pods,
            samples=samples,
            samples_at=samples_at,
        )
