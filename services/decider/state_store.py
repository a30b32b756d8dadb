"""State that survives restarts, in one JetStream KV bucket: engine state and control pauses per target.

Engine state (recommendation history, scale events, ...) is under the target's name (``web``, ``shop/web``),
JSON; its writes are throttled per target (at most one per ``min_interval`` seconds, and always after a scale
event), so a large fleet does not write every tick.  A control pause is under ``paused.<target>`` (a target
name never holds a dot, so the two never clash), written when the pause arrives and deleted on resume.

Keys are read one direct get at a time, for the targets that have a policy: no KV watcher (``keys()``) is
created, so none is left behind on the service's connection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from services.decider.engine.evaluate import TargetState
from services.decider.engine.normalize import HpaState, Recommendation, ScaleEvent
from services.decider.engine.rules import RuleState
from shared.schemas import DeciderControl

log = logging.getLogger(__name__)

STATE_VERSION = 1


class StoredState(msgspec.Struct, frozen=True, kw_only=True):
    """The persisted part of a target's engine state."""

    version: int = STATE_VERSION
    target: str
    saved_at: float
    recommendations: list[tuple[int, float]] = msgspec.field(default_factory=list)
    scale_up_events: list[tuple[int, float, bool]] = msgspec.field(default_factory=list)
    scale_down_events: list[tuple[int, float, bool]] = msgspec.field(default_factory=list)
    failures: int = 0
    last_active_at: float | None = None
    rule_fired_at: dict[str, float] = msgspec.field(default_factory=dict)
    panic_since: float | None = None
    max_panic_pods: int = 0


def snapshot_state(target: str, state: TargetState, now: float) -> StoredState:
    hpa = state.hpa
    return StoredState(
        target=target,
        saved_at=now,
        recommendations=[(r.replicas, r.at) for r in hpa.recommendations],
        scale_up_events=[(e.change, e.at, e.outdated) for e in hpa.scale_up_events],
        scale_down_events=[(e.change, e.at, e.outdated) for e in hpa.scale_down_events],
        failures=state.failures,
        last_active_at=state.last_active_at,
        rule_fired_at=dict(state.rules.fired_at),
        panic_since=state.panic.panic_since,
        max_panic_pods=state.panic.max_panic_pods,
    )


def restore_state(stored: StoredState) -> TargetState:
    state = TargetState(
        hpa=HpaState(
            recommendations=[Recommendation(r, at) for r, at in stored.recommendations],
            scale_up_events=[ScaleEvent(c, at, old) for c, at, old in stored.scale_up_events],
            scale_down_events=[ScaleEvent(c, at, old) for c, at, old in stored.scale_down_events],
            initialized=True,
        ),
        rules=RuleState(fired_at=dict(stored.rule_fired_at)),
        failures=stored.failures,
        last_active_at=stored.last_active_at,
    )
    state.panic.panic_since = stored.panic_since
    state.panic.max_panic_pods = stored.max_panic_pods
    state.panic.started = True
    return state


def state_key(target: str) -> str:
    """KV keys allow ``/``; a target name is already a valid key."""
    return target


def pause_key(target: str) -> str:
    return f"paused.{target}"


class StateStore:
    """Loads and saves TargetStates in one KV bucket."""

    def __init__(self, kv: KeyValue, *, min_interval: float = 5.0) -> None:
        self._kv = kv
        self._min_interval = min_interval
        self._last_saved: dict[str, float] = {}
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(StoredState)
        self._pause_decoder = msgspec.json.Decoder(DeciderControl)

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, *, min_interval: float = 5.0) -> StateStore:
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, description="scalebus decider"))
        return cls(kv, min_interval=min_interval)

    async def _value(self, key: str) -> bytes | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:  # also raised for a deleted key
            return None
        return entry.value

    async def load(self, targets: Iterable[str]) -> dict[str, TargetState]:
        """Stored engine states of the given targets."""
        states: dict[str, TargetState] = {}
        for target in targets:
            value = await self._value(state_key(target))
            if value is None:
                continue
            try:
                stored = self._decoder.decode(value)
            except msgspec.DecodeError as exc:
                log.warning("ignoring unreadable stored state", extra={"key": target, "error": str(exc)})
                continue
            states[stored.target] = restore_state(stored)
        return states

    def due(self, target: str, now: float, *, force: bool = False) -> bool:
        last = self._last_saved.get(target)
        return force or last is None or now - last >= self._min_interval

    async def save(self, target: str, state: TargetState, now: float) -> None:
        await self._kv.put(state_key(target), self._encoder.encode(snapshot_state(target, state, now)))
        self._last_saved[target] = now

    async def load_pauses(self, targets: Iterable[str]) -> dict[str, DeciderControl]:
        """Control pauses in force for the given targets."""
        pauses: dict[str, DeciderControl] = {}
        for target in targets:
            value = await self._value(pause_key(target))
            if value is None:
                continue
            try:
                control = self._pause_decoder.decode(value)
            except msgspec.DecodeError as exc:
                log.warning("ignoring unreadable stored pause", extra={"key": target, "error": str(exc)})
                continue
            pauses[control.target] = control
        return pauses

    async def save_pause(self, control: DeciderControl) -> None:
        await self._kv.put(pause_key(control.target), self._encoder.encode(control))

    async def clear_pause(self, target: str) -> None:
        await self._kv.delete(pause_key(target))
