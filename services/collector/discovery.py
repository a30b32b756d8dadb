"""Replicas of each target, from the actuator's TargetStatus messages (the source of truth)."""

from __future__ import annotations

from shared.schemas import ReplicaStatus, TargetStatus


class ReplicaDirectory:
    """Latest TargetStatus per target; older messages never overwrite newer ones."""

    def __init__(self) -> None:
        self._status: dict[str, TargetStatus] = {}

    def update(self, status: TargetStatus) -> None:
        current = self._status.get(status.target)
        if current is not None and status.observed_at < current.observed_at:
            return
        self._status[status.target] = status

    def replicas(self, target: str) -> tuple[ReplicaStatus, ...]:
        """Replicas that run (or are starting) and so can be measured."""
        status = self._status.get(target)
        if status is None:
            return ()
        return tuple(replica for replica in status.replicas if replica.phase in ("Running", "Pending"))
