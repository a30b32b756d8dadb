"""The decider service: keeps the latest status and snapshot per target, evaluates every policy once per
tick (and at once when a snapshot is urgent or crosses a rule threshold), and publishes one DecisionBatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.decider.config import DeciderConfig
from services.decider.engine.evaluate import Outcome, TargetState, evaluate
from services.decider.engine.observation import Observation
from services.decider.engine.rules import condition_crossed
from services.decider.engine.spec import TargetPolicy
from services.decider.policy.registry import PolicyRegistry, ReloadReport
from services.decider.state_store import StateStore
from services.decider.telemetry import DeciderMetrics
from shared.bus import Bus
from shared.clock import Clock
from shared.codec import MessageDecoder
from shared.errors import PermanentError
from shared.schemas import Alert, DeciderControl, Decision, DecisionBatch, MetricSnapshot, TargetStatus
from shared.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PERSIST_CONCURRENCY = 128
"""KV writes of engine state in flight at once (a large fleet saves thousands of targets every few seconds)."""


@dataclass(slots=True)
class TargetView:
    """What the decider knows about one target."""

    state: TargetState = field(default_factory=TargetState)
    status: TargetStatus | None = None
    snapshot: MetricSnapshot | None = None
    pending_desired: int | None = None
    pending_since: float = 0.0
    last_desired: int | None = None
    last_reason: str = ""
    last_emitted_at: float = 0.0
    crossed: frozenset[str] = frozenset()
    scaled: bool = False


class Decider:
    """Service object: ``start()`` subscribes and starts the loops, ``stop()`` ends them."""

    def __init__(
        self,
        config: DeciderConfig,
        *,
        bus: Bus,
        clock: Clock,
        registry: PolicyRegistry,
        metrics: DeciderMetrics,
        instance: str,
    ) -> None:
        self.config = config
        self.bus = bus
        self.clock = clock
        self.registry = registry
        self.metrics = metrics
        self.instance = instance
        self.views: dict[str, TargetView] = {}
        self.paused: dict[str, DeciderControl] = {}
        self.tick = 0
        self.store: StateStore | None = None
        self._restored: set[str] = set()
        """Targets whose stored state and pause have been read (with a store, only these are evaluated)."""
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._control_lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.ensure_core_streams()
        self.metrics.policies.set(len(self.registry.policies))
        if self.config.persist_state:
            self.store = await StateStore.open(self.bus.js, self.bus.subjects.bucket_name("decider_state"))
            await self._restore(self.store, list(self.registry.policies))
            log.info("restored engine state", extra={"targets": len(self.views), "paused": sorted(self.paused)})
        subjects = self.bus.subjects
        self._subscriptions.append(
            await self.bus.subscribe(subjects.status_all, MessageDecoder(TargetStatus), self._on_status)
        )
        self._subscriptions.append(
            await self.bus.subscribe(subjects.snapshots_all, MessageDecoder(MetricSnapshot), self._on_snapshot)
        )
        self._subscriptions.append(
            await self.bus.subscribe(subjects.decider_control, MessageDecoder(DeciderControl), self._on_control)
        )
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="decider-tick"))
        self._tasks.append(asyncio.create_task(self._reload_loop(), name="decider-reload"))

    async def stop(self) -> None:
        self._stopping.set()
        # Unsubscribing cancels a handler that is still running: let an in-flight control message or urgent
        # tick finish first (a handler still waiting for a lock is dropped, as an unread message would be).
        async with self._control_lock, self._lock:
            for sub in self._subscriptions:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            self._subscriptions.clear()
        await asyncio.gather(*(cancel_and_wait(task) for task in self._tasks))
        self._tasks.clear()
        async with self._lock:
            await self._persist(force=True)

    # -- inputs -----------------------------------------------------------------------------------

    def _view(self, target: str) -> TargetView:
        view = self.views.get(target)
        if view is None:
            view = self.views[target] = TargetView()
        return view

    async def _on_status(self, status: TargetStatus, msg: Msg) -> None:
        if msg.subject != self.bus.subjects.status(status.target):
            raise PermanentError(f"status for target {status.target!r} arrived on {msg.subject}")
        view = self._view(status.target)
        if view.status is not None and status.observed_at < view.status.observed_at:
            return
        view.status = status

    async def _on_snapshot(self, snapshot: MetricSnapshot, msg: Msg) -> None:
        if msg.subject != self.bus.subjects.snapshots(snapshot.target):
            raise PermanentError(f"snapshot for target {snapshot.target!r} arrived on {msg.subject}")
        view = self._view(snapshot.target)
        if view.snapshot is not None and snapshot.collected_at < view.snapshot.collected_at:
            return
        view.snapshot = snapshot
        policy = self.registry.policies.get(snapshot.target)
        urgent = snapshot.urgent
        if policy is not None and policy.rules:
            probe = Observation(now=self.clock.now(), spec_replicas=0, status_replicas=0, samples=snapshot.samples)
            crossed = frozenset(r.name for r in policy.rules if condition_crossed(r, probe))
            urgent = urgent or bool(crossed - view.crossed)
            view.crossed = crossed
        if urgent and policy is not None:
            await self.run_tick([snapshot.target], trigger="urgent")

    async def _on_control(self, control: DeciderControl, _: Msg) -> None:
        async with self._control_lock:
            if self.store is not None:
                await self._store_control(self.store, control)
            if control.action == "pause":
                self.paused[control.target] = control
            else:
                self.paused.pop(control.target, None)
            self.metrics.paused_targets.set(len(self.paused))
            log.info("target %sd", control.action, extra={"target": control.target, "reason": control.reason})

    async def _store_control(self, store: StateStore, control: DeciderControl) -> None:
        try:
            if control.action == "pause":
                await store.save_pause(control)
            else:
                await store.clear_pause(control.target)
        except Exception as exc:
            self.metrics.state_save_failures.inc()
            log.warning(
                "could not store the %s of a target; it holds until this decider restarts",
                control.action,
                extra={"target": control.target, "error": repr(exc)},
            )

    # -- loops ------------------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = self.config.tick_interval_seconds
        next_at = time.monotonic()
        while not self._stopping.is_set():
            try:
                await self.run_tick()
            except Exception:
                log.exception("tick failed")
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    async def _reload_loop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.config.reload_interval_seconds)
            try:
                report = await self.reload_policies()
                if report.changed and self.store is not None:
                    await self._restore(self.store, [t for t in self.registry.policies if t not in self._restored])
                for error in report.errors:
                    await self.bus.publish(
                        self.bus.subjects.alerts("decider"),
                        Alert(
                            service="decider",
                            severity="warning",
                            code="PolicyRejected",
                            message=f"{error}; the last good policy stays in force",
                            raised_at=self.clock.now(),
                        ),
                    )
            except Exception:
                log.exception("policy reload failed")

    async def _restore(self, store: StateStore, targets: list[str]) -> None:
        """Engine state and control pauses of targets not restored yet, from the KV bucket (a target is not
        evaluated before this, so a fresh state never overwrites the stored one)."""
        for target, state in (await store.load(targets)).items():
            self._view(target).state = state
        self._restored.update(targets)
        async with self._control_lock:  # a control message arriving meanwhile is newer than the stored pause
            for target, control in (await store.load_pauses(targets)).items():
                self.paused.setdefault(target, control)
            self.metrics.paused_targets.set(len(self.paused))

    async def reload_policies(self) -> ReloadReport:
        """Re-read the policies directory (in a worker thread: it reads files); a rejected file is logged and
        counted, its old policy kept."""
        report = await asyncio.to_thread(self.registry.reload)
        for error in report.errors:
            self.metrics.policy_reload_failures.inc()
            log.error(
                "policy rejected; the last good policy stays in force",
                extra={"file": error.file, "field": error.field, "reason": error.reason},
            )
        self.metrics.invalid_policy_files.set(len(self.registry.file_errors()))
        if report.changed:
            self.metrics.policy_reloads.inc()
            self.metrics.policies.set(len(self.registry.policies))
            log.info(
                "policies reloaded",
                extra={
                    "loaded": list(report.loaded),
                    "removed": list(report.removed),
                    "targets": sorted(self.registry.policies),
                },
            )
        return report

    # -- evaluation -------------------------------------------------------------------------------

    def observe(self, view: TargetView, now: float) -> Observation | None:
        status = view.status
        if status is None or now - status.observed_at > self.config.status_max_age_seconds:
            return None
        if view.pending_desired is not None and (
            status.spec_replicas == view.pending_desired
            or now - view.pending_since > self.config.pending_decision_seconds
        ):
            view.pending_desired = None
        snapshot = view.snapshot
        fresh = snapshot is not None and now - snapshot.collected_at <= self.config.snapshot_max_age_seconds
        observation = Observation.from_status(
            now,
            status,
            snapshot.samples if fresh and snapshot is not None else (),
            snapshot.collected_at if fresh and snapshot is not None else 0.0,
        )
        if view.pending_desired is not None:
            observation.spec_replicas = view.pending_desired
        return observation

    def effective_policy(self, policy: TargetPolicy, view: TargetView) -> TargetPolicy:
        if policy.paused:
            return policy
        control = self.paused.get(policy.target)
        if control is not None:
            return dataclasses.replace(policy, paused=True, paused_replicas=control.replicas)
        if view.status is not None and view.status.paused:
            return dataclasses.replace(policy, paused=True)
        return policy

    def decide(self, targets: list[str] | None = None) -> list[Decision]:
        """Evaluate targets (all with a policy by default) and return the decisions worth publishing."""
        now = self.clock.now()
        policies = self.registry.policies
        decisions: list[Decision] = []
        for target in targets if targets is not None else list(policies):
            policy = policies.get(target)
            if policy is None or (self.store is not None and target not in self._restored):
                continue
            view = self._view(target)
            observation = self.observe(view, now)
            if observation is None or view.status is None:
                continue
            outcome = evaluate(self.effective_policy(policy, view), view.state, observation)
            self.metrics.evaluations.inc()
            decision = self._decision(policy, view, view.status, outcome, now)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def _decision(
        self, policy: TargetPolicy, view: TargetView, status: TargetStatus, outcome: Outcome, now: float
    ) -> Decision | None:
        reported = status.spec_replicas
        changed_state = outcome.reason != view.last_reason
        differs = outcome.desired != reported
        retry = differs and (
            outcome.desired != view.last_desired or now - view.last_emitted_at >= self.config.pending_decision_seconds
        )
        if outcome.desired != outcome.current:
            view.pending_desired, view.pending_since = outcome.desired, now
            view.scaled = True
        if not (changed_state or retry):
            return None
        view.last_desired, view.last_reason, view.last_emitted_at = outcome.desired, outcome.reason, now
        self.metrics.desired_replicas.labels(policy.target).set(outcome.desired)
        self.metrics.decisions.labels(outcome.reason).inc()
        return Decision(
            id=uuid.uuid4().hex,
            target=policy.target,
            current_replicas=reported,
            desired_replicas=outcome.desired,
            reason=outcome.reason,
            message=outcome.message,
            decided_at=now,
            min_replicas=policy.min_replicas,
            max_replicas=policy.max_replicas,
            explanation=outcome.explanation,
        )

    async def run_tick(self, targets: list[str] | None = None, *, trigger: str = "tick") -> DecisionBatch | None:
        async with self._lock:
            started = time.perf_counter()
            decisions = self.decide(targets)
            self.metrics.tick_seconds.observe(time.perf_counter() - started)
            self.metrics.ticks.labels(trigger).inc()
            self.tick += 1
            batch = None
            if decisions:
                batch = DecisionBatch(
                    batch_id=uuid.uuid4().hex,
                    decider=self.instance,
                    tick=self.tick,
                    decided_at=self.clock.now(),
                    decisions=tuple(decisions),
                )
                await self.bus.publish_persistent(self.bus.subjects.decisions, batch, msg_id=batch.batch_id)
                self.metrics.batches.inc()
                for decision in decisions:
                    log.info(
                        "decision",
                        extra={
                            "target": decision.target,
                            "current": decision.current_replicas,
                            "desired": decision.desired_replicas,
                            "reason": decision.reason,
                        },
                    )
            await self._persist()
            return batch

    async def _persist(self, *, force: bool = False) -> None:
        """Save the engine state of the targets that are due, a bounded number of writes at a time.

        The due list is taken before the first await: status and snapshot handlers add views meanwhile.
        """
        store = self.store
        if store is None:
            return
        now = self.clock.now()
        policies = self.registry.policies
        due = [
            (target, view)
            for target, view in self.views.items()
            if target in policies and store.due(target, now, force=force or view.scaled)
        ]
        for start in range(0, len(due), PERSIST_CONCURRENCY):
            chunk = due[start : start + PERSIST_CONCURRENCY]
            results = await asyncio.gather(
                *(store.save(target, view.state, now) for target, view in chunk), return_exceptions=True
            )
            for (target, view), result in zip(chunk, results, strict=True):
                if isinstance(result, BaseException):
                    self.metrics.state_save_failures.inc()
                    log.warning("could not save engine state", extra={"target": target, "error": repr(result)})
                else:
                    view.scaled = False
