"""Decision batches as the actuator reads them: leniently, so one bad decision does not sink its batch.

The wire schema (:class:`shared.schemas.DecisionBatch`) rejects a negative replica count or a
malformed target name for the whole batch.  The actuator decodes the same JSON into these looser
shapes and judges each decision on its own, so a bad decision is skipped *with a reason in its
result* while its neighbours are executed.  A payload that is not a decision batch at all is still
dead-lettered by the bus.
"""

from __future__ import annotations

import msgspec

from shared.schemas import SCHEMA_VERSION


class IncomingDecision(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    target: str
    current_replicas: int
    desired_replicas: int
    reason: str = ""
    message: str = ""
    decided_at: float
    min_replicas: int = 0
    max_replicas: int = 0


class IncomingBatch(msgspec.Struct, frozen=True, kw_only=True, tag="decision_batch", tag_field="kind"):
    version: int = SCHEMA_VERSION
    batch_id: str
    decider: str = ""
    tick: int = 0
    decided_at: float = 0.0
    decisions: tuple[IncomingDecision, ...] = ()
