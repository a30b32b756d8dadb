"""NATS subject names, in one place.  ``docs/subjects.md`` documents them for users."""

from __future__ import annotations

import msgspec


class Subjects(msgspec.Struct, frozen=True, kw_only=True):
    """Subject layout under a configurable prefix (``scalebus`` by default)."""

    prefix: str = "scalebus"

    def metrics(self, target: str) -> str:
        """Custom metrics pushed by applications (:class:`shared.schemas.MetricPush`)."""
        return f"{self.prefix}.metrics.{target}"

    @property
    def metrics_all(self) -> str:
        return f"{self.prefix}.metrics.>"

    def snapshots(self, target: str) -> str:
        """Metric snapshots from the collector (:class:`shared.schemas.MetricSnapshot`)."""
        return f"{self.prefix}.snapshots.{target}"

    @property
    def snapshots_all(self) -> str:
        return f"{self.prefix}.snapshots.>"

    def status(self, target: str) -> str:
        """Target status from the actuator (:class:`shared.schemas.TargetStatus`)."""
        return f"{self.prefix}.status.{target}"

    @property
    def status_all(self) -> str:
        return f"{self.prefix}.status.>"

    @property
    def decisions(self) -> str:
        """Decision batches from the decider (:class:`shared.schemas.DecisionBatch`), JetStream."""
        return f"{self.prefix}.decisions"

    @property
    def decider_control(self) -> str:
        """Pause/resume requests to the decider (:class:`shared.schemas.DeciderControl`)."""
        return f"{self.prefix}.decider.control"

    def results(self, target: str) -> str:
        """Execution results from the actuator (:class:`shared.schemas.ExecutionResult`), JetStream."""
        return f"{self.prefix}.results.{target}"

    @property
    def results_all(self) -> str:
        return f"{self.prefix}.results.>"

    def alerts(self, service: str) -> str:
        """Operator alerts (:class:`shared.schemas.Alert`)."""
        return f"{self.prefix}.alerts.{service}"

    @property
    def alerts_all(self) -> str:
        return f"{self.prefix}.alerts.>"

    def dead_letter(self, service: str) -> str:
        """Messages a service could not process (:class:`shared.schemas.DeadLetter`), JetStream."""
        return f"{self.prefix}.deadletter.{service}"

    @property
    def dead_letter_all(self) -> str:
        return f"{self.prefix}.deadletter.>"

    def stream_name(self, purpose: str) -> str:
        """JetStream stream name for a purpose (DECISIONS, RESULTS, DEADLETTER)."""
        return f"{self.prefix.upper().replace('.', '_').replace('-', '_')}_{purpose.upper()}"

    def bucket_name(self, purpose: str) -> str:
        """JetStream KV bucket name for a purpose (leases, idempotency, decider state)."""
        return f"{self.prefix.replace('.', '_')}_{purpose}"
