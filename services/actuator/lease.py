"""Per-target leases in a JetStream KV bucket: one actuator instance acts on a target at a time.

A lease is a KV entry ``{holder, expires_at}`` keyed by target.  Taking or renewing it is a
compare-and-set on the entry's revision (create-if-absent, or update-if-unchanged), so of two
instances racing for a target exactly one wins.  The holder renews it periodically; if the holder
dies the lease lapses after ``ttl`` and another instance may take it over.  Expiry is judged with
the injected clock against ``expires_at`` (clocks of instances are assumed roughly in sync, as
with Kubernetes Leases).
"""

from __future__ import annotations

import contextlib
import logging

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from services.actuator.kv import kv_key
from shared.clock import Clock

log = logging.getLogger(__name__)

_CAS_ATTEMPTS = 3


class LeaseRecord(msgspec.Struct, frozen=True, kw_only=True):
    holder: str
    acquired_at: float
    expires_at: float


class LeaseOutcome(msgspec.Struct, frozen=True, kw_only=True):
    acquired: bool
    holder: str
    expires_at: float


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LeaseRecord)


class LeaseManager:
    """Takes, renews and releases this instance's target leases."""

    def __init__(self, kv: KeyValue, *, holder: str, ttl: float, clock: Clock) -> None:
        self._kv = kv
        self._holder = holder
        self._ttl = ttl
        self._clock = clock
        self._held: dict[str, tuple[int, float]] = {}
        """target -> (revision, acquired_at) of the leases this instance holds."""

    @property
    def holder(self) -> str:
        return self._holder

    def held(self) -> list[str]:
        return sorted(self._held)

    async def acquire(self, target: str) -> LeaseOutcome:
        """Take the lease, or renew it when already held; returns who holds it afterwards."""
        key = kv_key(target)
        for _ in range(_CAS_ATTEMPTS):
            now = self._clock.now()
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                entry = None
            current = _decoder.decode(entry.value) if entry is not None and entry.value else None
            if current is not None and current.holder != self._holder and current.expires_at > now:
                self._held.pop(target, None)
                return LeaseOutcome(acquired=False, holder=current.holder, expires_at=current.expires_at)
            acquired_at = current.acquired_at if current is not None and current.holder == self._holder else now
            record = LeaseRecord(holder=self._holder, acquired_at=acquired_at, expires_at=now + self._ttl)
            try:
                if entry is None:
                    revision = await self._kv.create(key, _encoder.encode(record))
                else:
                    revision = await self._kv.update(key, _encoder.encode(record), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue  # someone wrote in between: look again
            if target not in self._held:
                log.info("lease acquired", extra={"target": target, "holder": self._holder})
                if current is not None and current.holder != self._holder:
                    log.warning(
                        "took over an expired lease", extra={"target": target, "previous_holder": current.holder}
                    )
            self._held[target] = (revision, acquired_at)
            return LeaseOutcome(acquired=True, holder=self._holder, expires_at=record.expires_at)
        self._held.pop(target, None)
        return LeaseOutcome(acquired=False, holder="", expires_at=0.0)

    async def renew_all(self) -> None:
        """Renew every held lease; a lease lost meanwhile is dropped (and logged)."""
        for target in list(self._held):
            try:
                outcome = await self.acquire(target)
            except Exception as exc:  # a NATS hiccup: the next renewal tries again, expiry is still ahead
                log.warning("lease renewal failed", extra={"target": target, "error": repr(exc)})
                continue
            if not outcome.acquired:
                log.warning("lease lost", extra={"target": target, "holder": outcome.holder})

    async def release(self, target: str) -> None:
        held = self._held.pop(target, None)
        if held is None:
            return
        with contextlib.suppress(Exception):
            await self._kv.delete(kv_key(target), last=held[0])
            log.info("lease released", extra={"target": target})

    async def release_all(self) -> None:
        for target in list(self._held):
            await self.release(target)
