"""Idempotency by decision id, kept in a JetStream KV bucket so it survives actuator restarts.

A decision is *claimed* with a create-if-absent write before anything is done (an atomic
compare-and-set: of two claims only one succeeds), then *completed* with its result.  A decision
found claimed or completed is a duplicate: it is never executed again.  A claim whose claimer
stopped before completing it is *settled* by another instance with a result saying so.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.actuator.kv import kv_key
from shared.schemas import ExecutionResult


class AppliedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the bucket holds per decision id."""

    decision_id: str
    state: Literal["claimed", "done"]
    actuator: str
    claimed_at: float
    result: ExecutionResult | None = None


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    """This actuator owns the decision now; ``revision`` completes it."""

    revision: int


class IdempotencyStore(Protocol):
    async def lookup(self, decision_id: str) -> AppliedRecord | None: ...

    async def claim(self, decision_id: str, *, actuator: str, at: float) -> Claimed | AppliedRecord:
        """Claim the decision, or return the record of whoever claimed it first."""

    async def complete(self, decision_id: str, claim: Claimed, record: AppliedRecord) -> None: ...

    async def settle(self, decision_id: str, record: AppliedRecord) -> AppliedRecord:
        """Record the outcome of a claim whose claimer did not; returns the record that stands (ours, or an
        outcome recorded meanwhile)."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AppliedRecord)


class KvIdempotencyStore:
    """The store in a JetStream KV bucket (``<prefix>_actuator_applied``)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def lookup(self, decision_id: str) -> AppliedRecord | None:
        try:
            entry = await self._kv.get(kv_key(decision_id))
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return _decoder.decode(entry.value)

    async def claim(self, decision_id: str, *, actuator: str, at: float) -> Claimed | AppliedRecord:
        record = AppliedRecord(decision_id=decision_id, state="claimed", actuator=actuator, claimed_at=at)
        try:
            revision = await self._kv.create(kv_key(decision_id), _encoder.encode(record))
        except KeyWrongLastSequenceError:
            existing = await self.lookup(decision_id)
            return existing if existing is not None else record
        return Claimed(revision=revision)

    async def complete(self, decision_id: str, claim: Claimed, record: AppliedRecord) -> None:
        await self._kv.update(kv_key(decision_id), _encoder.encode(record), last=claim.revision)

    async def settle(self, decision_id: str, record: AppliedRecord) -> AppliedRecord:
        key = kv_key(decision_id)
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            entry = None
        current = _decoder.decode(entry.value) if entry is not None and entry.value else None
        if current is not None and current.result is not None:
            return current
        try:
            if entry is None:
                await self._kv.create(key, _encoder.encode(record))
            else:
                await self._kv.update(key, _encoder.encode(record), last=entry.revision)
        except KeyWrongLastSequenceError:  # someone else settled or completed it in between
            return await self.lookup(decision_id) or record
        return record


DRY_RUN_MEMORY = 100_000
"""Decision ids a dry-run actuator remembers (far more than the decisions stream holds in its hour)."""


class DryRunIdempotencyStore:
    """Dry-run changes nothing, the bucket included: it reads the bucket and remembers its own in memory,
    the newest ``capacity`` decisions (a long dry run must not grow without bound)."""

    def __init__(self, shared: IdempotencyStore | None, *, capacity: int = DRY_RUN_MEMORY) -> None:
        self._shared = shared
        self._capacity = capacity
        self._records: dict[str, AppliedRecord] = {}

    def _keep(self, record: AppliedRecord) -> None:
        self._records.pop(record.decision_id, None)
        self._records[record.decision_id] = record
        while len(self._records) > self._capacity:
            self._records.pop(next(iter(self._records)))

    async def lookup(self, decision_id: str) -> AppliedRecord | None:
        if decision_id in self._records:
            return self._records[decision_id]
        return await self._shared.lookup(decision_id) if self._shared is not None else None

    async def claim(self, decision_id: str, *, actuator: str, at: float) -> Claimed | AppliedRecord:
        existing = await self.lookup(decision_id)
        if existing is not None:
            return existing
        self._keep(AppliedRecord(decision_id=decision_id, state="claimed", actuator=actuator, claimed_at=at))
        return Claimed(revision=0)

    async def complete(self, decision_id: str, claim: Claimed, record: AppliedRecord) -> None:
        self._keep(record)

    async def settle(self, decision_id: str, record: AppliedRecord) -> AppliedRecord:
        current = await self.lookup(decision_id)
        if current is not None and current.result is not None:
            return current
        self._keep(record)
        return record
