"""The decision pipeline: every decision ends in exactly one ExecutionResult.

For each decision, in order: not a duplicate (its id already recorded) -> valid (known target,
sane replica count) and not stale -> lease held -> claimed (idempotency) -> breaker lets it through
-> not superseded -> read the backend -> plan within bounds and step -> rate limit -> (dry-run stops
here) -> scale, with retries for transient errors.  Every outcome but a duplicate, a skip included,
is claimed and recorded under the decision id and published once.  A decision whose target's lease
is held elsewhere is put back for redelivery, except on its last delivery, where it is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import msgspec

from services.actuator.backends.base import Backend, BackendError, Observed
from services.actuator.breaker import CircuitBreaker
from services.actuator.config import ActuatorConfig, TargetConfig
from services.actuator.idempotency import AppliedRecord, Claimed, IdempotencyStore
from services.actuator.intake import IncomingBatch, IncomingDecision
from services.actuator.lease import LeaseManager
from services.actuator.metrics import ActuatorMetrics
from services.actuator.ratelimit import ChangeRateLimiter, plan_change
from services.actuator.retry import Sleep, call_with_retry
from shared.clock import Clock
from shared.errors import RetryableError
from shared.schemas import Alert, ExecutionResult, ExecutionStatus

log = logging.getLogger(__name__)

T = TypeVar("T")

_OWED_LIMIT = 1024

Action = Literal["scale_up", "scale_down", "none"]
PublishResult = Callable[[ExecutionResult], Awaitable[None]]
PublishAlert = Callable[[Alert], Awaitable[None]]


@dataclass
class TargetRuntime:
    """One configured target with its backend and its per-target safety state."""

    config: TargetConfig
    backend: Backend
    breaker: CircuitBreaker
    last_decided_at: float = 0.0
    """``decided_at`` of the newest decision that reached the backend (older ones are superseded)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LeaseBusy(msgspec.Struct, frozen=True, kw_only=True):
    """Another instance holds the target's lease, or the decision itself: it must come back later."""

    target: str
    holder: str


class Executor:
    """Turns decisions into backend calls, safely, and reports each one."""

    def __init__(
        self,
        *,
        config: ActuatorConfig,
        targets: dict[str, TargetRuntime],
        idempotency: IdempotencyStore,
        leases: LeaseManager | None,
        metrics: ActuatorMetrics,
        clock: Clock,
        instance: str,
        publish_result: PublishResult,
        publish_alert: PublishAlert,
        on_change: Callable[[str], None] = lambda target: None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._targets = targets
        self._idempotency = idempotency
        self._leases = leases
        self._metrics = metrics
        self._clock = clock
        self._instance = instance
        self._publish_result = publish_result
        self._publish_alert = publish_alert
        self._on_change = on_change
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rate = ChangeRateLimiter(clock)
        self._dry_run = config.dry_run
        self._unrecorded: dict[str, ExecutionResult] = {}
        """Results published but not recorded (the KV write failed): recorded when the decision comes back."""
        self._unpublished: dict[str, ExecutionResult] = {}
        """Results recorded but not published (the bus failed): published when the decision comes back."""

    # -- batches ------------------------------------------------------------------------------

    async def handle_batch(self, batch: IncomingBatch, *, last_delivery: bool = False) -> list[ExecutionResult]:
        """Execute a batch; decisions for different targets run concurrently, one target's in order.

        Raises RetryableError when a target's lease is held elsewhere, after everything else in
        the batch has been handled (its redelivery finds those decisions already recorded).  On the
        batch's ``last_delivery`` there is no redelivery to wait for: such a decision is skipped
        (LeaseHeldElsewhere) so that it still ends with a result.
        """
        by_target: dict[str, list[IncomingDecision]] = {}
        for decision in batch.decisions:
            by_target.setdefault(decision.target, []).append(decision)
        self._metrics.pending.inc(len(batch.decisions))
        gathered = await asyncio.gather(
            *(self._run_target(decisions, last_delivery) for decisions in by_target.values()),
            return_exceptions=True,
        )
        errors = [item for item in gathered if isinstance(item, BaseException)]
        outcomes = [item for item in gathered if not isinstance(item, BaseException)]
        results = [result for group in outcomes for result in group if isinstance(result, ExecutionResult)]
        busy = [outcome for group in outcomes for outcome in group if isinstance(outcome, LeaseBusy)]
        if errors:
            # The bus (KV, publish) failed mid-batch: redeliver it; what was recorded is not redone.
            log.error("batch interrupted; it will be redelivered", extra={"error": repr(errors[0])})
            raise RetryableError(f"batch interrupted: {errors[0]!r}", delay=1.0) from errors[0]
        if busy:
            held = ", ".join(f"{b.target} (held by {b.holder or 'another instance'})" for b in busy)
            raise RetryableError(f"lease busy: {held}", delay=self._config.consumer.lease_busy_delay_seconds)
        return results

    async def _run_target(
        self, decisions: list[IncomingDecision], last_delivery: bool
    ) -> list[ExecutionResult | LeaseBusy]:
        outcomes: list[ExecutionResult | LeaseBusy] = []
        try:
            for decision in decisions:
                outcomes.append(await self.execute(decision, last_delivery=last_delivery))
                self._metrics.pending.dec()
        finally:
            self._metrics.pending.dec(len(decisions) - len(outcomes))
        return outcomes

    # -- one decision -------------------------------------------------------------------------

    async def execute(self, decision: IncomingDecision, *, last_delivery: bool = False) -> ExecutionResult | LeaseBusy:
        """Handle one decision: exactly one result per decision id, however often it is delivered.

        A decision already recorded is a duplicate (its result is not published again).  Every other
        outcome, a skip included, is claimed under the decision id first: the claim is atomic, so of an
        instance acting and another one skipping the same decision only one gets to do either.
        """
        started = time.monotonic()
        if not decision.id:
            invalid = self._skipped(decision, "InvalidDecision", "the decision has no id", started)
            return await self._finish(decision, None, invalid, record=False)
        existing = await self._idempotency.lookup(decision.id)
        if existing is not None:
            return await self._recorded(decision, existing, started, last_delivery)

        runtime = self._targets.get(decision.target)
        rejection = self._reject(decision, runtime)
        if rejection is not None or runtime is None:
            code, reason = rejection or ("UnknownTarget", "")
            return await self._skip_once(decision, code, reason, started, last_delivery)

        async with runtime.lock:
            if self._leases is not None and not self._dry_run:
                outcome = await self._leases.acquire(decision.target)
                if not outcome.acquired:
                    self._metrics.lease_busy.labels(decision.target).inc()
                    log.info("lease held elsewhere", extra={"target": decision.target, "holder": outcome.holder})
                    if last_delivery:
                        holder = outcome.holder or "another instance"
                        reason = f"{holder} holds the lease of {decision.target} and this was the last delivery"
                        return await self._skip_once(decision, "LeaseHeldElsewhere", reason, started, last_delivery)
                    return LeaseBusy(target=decision.target, holder=outcome.holder)
            claim = await self._idempotency.claim(decision.id, actuator=self._instance, at=self._clock.now())
            if isinstance(claim, AppliedRecord):
                return await self._recorded(decision, claim, started, last_delivery)
            self._metrics.in_flight.inc()
            try:
                result = await self._act(decision, runtime, started)
            except Exception as exc:  # a bug, not a backend answer: record it rather than leave a bare claim
                log.exception("actuation crashed", extra={"decision_id": decision.id, "target": decision.target})
                runtime.breaker.release_trial()
                result = self._result(decision, "failed", "InternalError", started, error=f"internal error: {exc!r}")
            finally:
                self._metrics.in_flight.dec()
            return await self._finish(decision, claim, result, record=True)

    async def _skip_once(
        self, decision: IncomingDecision, code: str, reason: str, started: float, last_delivery: bool
    ) -> ExecutionResult | LeaseBusy:
        """Skip a decision under a claim, so a redelivery (or another instance) finds it recorded."""
        claim = await self._idempotency.claim(decision.id, actuator=self._instance, at=self._clock.now())
        if isinstance(claim, AppliedRecord):
            return await self._recorded(decision, claim, started, last_delivery)
        return await self._finish(decision, claim, self._skipped(decision, code, reason, started), record=True)

    def _reject(self, decision: IncomingDecision, runtime: TargetRuntime | None) -> tuple[str, str] | None:
        """Bad input is skipped with a reason, never executed."""
        safety = self._config.safety
        if runtime is None:
            known = ", ".join(sorted(self._targets)) or "none"
            return "UnknownTarget", f"target {decision.target!r} is not configured in this actuator (known: {known})"
        if decision.desired_replicas < 0 or decision.current_replicas < 0:
            return "InvalidReplicas", (
                f"negative replica count (current {decision.current_replicas}, desired {decision.desired_replicas})"
            )
        if decision.desired_replicas > safety.absurd_replicas:
            return "InvalidReplicas", (
                f"desired replicas {decision.desired_replicas} is absurd (above the sanity limit "
                f"{safety.absurd_replicas}); refusing rather than clamping"
            )
        age = self._clock.now() - decision.decided_at
        if age > safety.max_decision_age_seconds:
            return "StaleDecision", (
                f"decided {age:.1f}s ago, older than the {safety.max_decision_age_seconds:g}s limit"
            )
        return None

    async def _act(self, decision: IncomingDecision, runtime: TargetRuntime, started: float) -> ExecutionResult:
        target = runtime.config
        breaker = runtime.breaker
        if not breaker.allow():
            reopens = breaker.reopens_at or 0.0
            return self._skipped(
                decision,
                "BreakerOpen",
                f"target paused after {breaker.consecutive_failures} consecutive failures; "
                f"next trial in {max(0.0, reopens - self._clock.now()):.1f}s",
                started,
            )
        if decision.decided_at < runtime.last_decided_at:
            breaker.release_trial()
            return self._skipped(
                decision, "Superseded", "a newer decision for this target was already executed", started
            )
        runtime.last_decided_at = decision.decided_at

        try:
            observed = await self._backend_call(runtime, "read", runtime.backend.read)
        except BackendError as exc:
            return await self._failed(decision, runtime, None, exc, started)

        previous = observed.spec_replicas
        plan = plan_change(
            current=previous,
            desired=decision.desired_replicas,
            min_replicas=target.min_replicas,
            max_replicas=target.max_replicas,
            max_step=target.max_step or self._config.safety.max_step,
        )
        notes = "; ".join(plan.notes)
        if plan.replicas == previous:
            breaker.record_success()
            why = f" ({notes})" if notes else ""
            return self._skipped(
                decision, "NoChange", f"already at {previous} replicas{why}", started, previous=previous
            )
        interval = (
            target.min_change_interval_seconds
            if target.min_change_interval_seconds is not None
            else self._config.safety.min_change_interval_seconds
        )
        wait = self._rate.wait_needed(target.name, interval)
        if wait > 0:
            breaker.record_success()
            return self._skipped(
                decision,
                "RateLimited",
                f"at most one change per {interval:g}s; next change allowed in {wait:.1f}s",
                started,
                previous=previous,
            )
        summary = (
            f"{previous} → {plan.replicas} ({decision.reason or 'no reason given'}{'; ' + notes if notes else ''})"
        )
        if self._dry_run:
            breaker.record_success()
            self._rate.record_change(target.name)
            return self._result(
                decision,
                "skipped",
                f"DryRun: would scale {target.name} {summary}",
                started,
                previous=previous,
                resulting=plan.replicas,
            )
        try:
            after = await self._backend_call(runtime, "scale", lambda: runtime.backend.scale(plan.replicas))
        except BackendError as exc:
            return await self._failed(decision, runtime, previous, exc, started)
        breaker.record_success()
        self._rate.record_change(target.name)
        self._on_change(target.name)
        return self._result(
            decision,
            "applied",
            f"{decision.reason or 'Scaled'}{': ' + notes if notes else ''}",
            started,
            previous=previous,
            resulting=after.spec_replicas,
        )

    async def _backend_call(
        self,
        runtime: TargetRuntime,
        operation: str,
        call: Callable[[], Awaitable[Observed]],
    ) -> Observed:
        backend = runtime.backend

        async def attempt() -> Observed:
            endpoint = backend.endpoint
            self._metrics.endpoint_pending.labels(endpoint).inc()
            self._metrics.endpoint_events.labels(endpoint).inc()
            began = time.monotonic()
            outcome = "success"
            try:
                observed = await call()
            except BackendError as exc:
                outcome = "error"
                if exc.status is not None:
                    self._metrics.endpoint_failures.labels(endpoint).inc()
                    self._metrics.endpoint_status_codes.labels(endpoint, str(exc.status)).inc()
                else:
                    self._metrics.endpoint_errors.labels(endpoint).inc()
                raise
            finally:
                self._metrics.endpoint_pending.labels(endpoint).dec()
                self._metrics.backend_call_seconds.labels(backend.kind, operation, outcome).observe(
                    time.monotonic() - began
                )
            self._metrics.endpoint_successes.labels(endpoint).inc()
            if backend.success_status is not None:
                self._metrics.endpoint_status_codes.labels(endpoint, str(backend.success_status)).inc()
            return observed

        def on_retry(number: int, exc: BackendError, delay: float) -> None:
            self._metrics.backend_retries.labels(backend.kind).inc()
            log.warning(
                "transient backend error; retrying",
                extra={
                    "target": runtime.config.name,
                    "operation": operation,
                    "retry": number,
                    "delay": round(delay, 3),
                    "error": str(exc),
                },
            )

        return await call_with_retry(
            attempt, self._config.safety.retry, rng=self._rng, sleep=self._sleep, on_retry=on_retry
        )

    async def _failed(
        self,
        decision: IncomingDecision,
        runtime: TargetRuntime,
        previous: int | None,
        exc: BackendError,
        started: float,
    ) -> ExecutionResult:
        breaker = runtime.breaker
        opened = breaker.record_failure()
        kind = "transient" if exc.retryable else "permanent"
        status = f" (HTTP {exc.status})" if exc.status is not None else ""
        error = f"{kind} backend error{status}: {exc}"
        if opened:
            await self._breaker_opened(runtime, error)
        self._metrics.set_breaker_state(runtime.config.name, breaker.state)
        return self._result(decision, "failed", "BackendError", started, previous=previous, error=error)

    async def _breaker_opened(self, runtime: TargetRuntime, error: str) -> None:
        target = runtime.config.name
        breaker = runtime.breaker
        self._metrics.breaker_opened.labels(target).inc()
        self._metrics.alerts.labels("BreakerOpen").inc()
        message = (
            f"circuit breaker opened for {target} after {breaker.consecutive_failures} consecutive failures; "
            f"actuations paused for {self._config.safety.breaker.open_seconds:g}s. Last error: {error}"
        )
        log.error("circuit breaker opened", extra={"target": target, "error": error})
        alert = Alert(
            service="actuator",
            target=target,
            severity="critical",
            code="BreakerOpen",
            message=message,
            raised_at=self._clock.now(),
        )
        try:
            await self._publish_alert(alert)
        except Exception:
            log.exception("could not publish the breaker alert", extra={"target": target})

    # -- results ------------------------------------------------------------------------------

    async def _recorded(
        self, decision: IncomingDecision, record: AppliedRecord, started: float, last_delivery: bool
    ) -> ExecutionResult | LeaseBusy:
        """A decision seen before is never executed again, and gets no second result.

        Its result was published when it was handled, so nothing is published again (followers of the
        results subject see one result per decision).  A decision only claimed so far is either still
        being handled by its claimer (it comes back later) or was orphaned by a claimer that stopped
        mid-way: that one is settled with a result saying so, once.
        """
        self._metrics.skips.labels(self._target_label(decision), "Duplicate").inc()
        log.info("duplicate decision ignored", extra={"decision_id": decision.id, "state": record.state})
        if record.result is not None:
            owed = self._unpublished.pop(decision.id, None)
            if owed is not None:
                await self._publish(owed)
            return record.result
        remembered = self._unrecorded.pop(decision.id, None)
        if remembered is not None:  # handled and published here, but recording it failed: record it now
            standing = await self._idempotency.settle(decision.id, self._record(decision, remembered))
            return standing.result or remembered
        if not await self._claimer_gone(decision, record):
            if last_delivery:  # the claimer publishes the result when it is done
                return self._skipped(decision, "Duplicate", f"being handled by {record.actuator}", started)
            return LeaseBusy(target=decision.target, holder=record.actuator)
        orphaned = self._skipped(
            decision,
            "Duplicate",
            f"decision claimed by {record.actuator} at {record.claimed_at:.3f}, which stopped before recording "
            "an outcome: whether it acted is unknown",
            started,
        )
        standing = await self._idempotency.settle(decision.id, self._record(decision, orphaned))
        if standing.result == orphaned:
            await self._publish(orphaned)
        return standing.result or orphaned

    async def _claimer_gone(self, decision: IncomingDecision, record: AppliedRecord) -> bool:
        """A claim older than a lease's lifetime, on a target whose lease this instance can take, is orphaned."""
        if self._clock.now() - record.claimed_at < self._config.safety.lease.ttl_seconds:
            return False
        if self._leases is None or self._dry_run or decision.target not in self._targets:
            return True
        return (await self._leases.acquire(decision.target)).acquired

    def _record(self, decision: IncomingDecision, result: ExecutionResult) -> AppliedRecord:
        return AppliedRecord(
            decision_id=decision.id, state="done", actuator=self._instance, claimed_at=self._clock.now(), result=result
        )

    async def _finish(
        self, decision: IncomingDecision, claim: Claimed | None, result: ExecutionResult, *, record: bool
    ) -> ExecutionResult:
        label = self._target_label(decision)
        self._metrics.actuations.labels(label, _action(result, decision), result.status).inc()
        if result.status == "skipped":
            self._metrics.skips.labels(label, result.reason.split(":", 1)[0]).inc()
        if record and claim is not None:
            try:
                await self._idempotency.complete(decision.id, claim, self._record(decision, result))
            except Exception:
                log.exception("could not record the decision outcome", extra={"decision_id": decision.id})
                _remember(self._unrecorded, result)
        runtime = self._targets.get(decision.target)
        if runtime is not None:
            self._metrics.set_breaker_state(decision.target, runtime.breaker.state)
        log_level = logging.WARNING if result.status == "failed" else logging.INFO
        log.log(
            log_level,
            "decision executed",
            extra={
                "decision_id": decision.id,
                "target": decision.target,
                "status": result.status,
                "reason": result.reason,
                "error": result.error,
                "previous": result.previous_replicas,
                "resulting": result.resulting_replicas,
                "dry_run": result.dry_run,
            },
        )
        await self._publish(result)
        return result

    def _target_label(self, decision: IncomingDecision) -> str:
        """The target as a metric label: unknown targets share one (labels must stay few)."""
        return decision.target if decision.target in self._targets else "_unknown"

    async def _publish(self, result: ExecutionResult) -> None:
        """Publish a result; when the bus fails, remember it and raise, so the batch comes back to publish it."""
        try:
            await self._publish_result(result)
        except Exception:
            log.exception("could not publish the execution result", extra={"decision_id": result.decision_id})
            _remember(self._unpublished, result)
            raise

    def _skipped(
        self,
        decision: IncomingDecision,
        code: str,
        reason: str,
        started: float,
        *,
        previous: int | None = None,
        resulting: int | None = None,
    ) -> ExecutionResult:
        return self._result(
            decision,
            "skipped",
            f"{code}: {reason}" if reason else code,
            started,
            previous=previous,
            resulting=resulting if resulting is not None else previous,
        )

    def _result(
        self,
        decision: IncomingDecision,
        status: ExecutionStatus,
        reason: str,
        started: float,
        *,
        previous: int | None = None,
        resulting: int | None = None,
        error: str = "",
    ) -> ExecutionResult:
        return ExecutionResult(
            decision_id=decision.id,
            target=decision.target,
            status=status,
            reason=reason,
            error=error,
            previous_replicas=previous,
            requested_replicas=decision.desired_replicas,
            resulting_replicas=resulting,
            dry_run=self._dry_run,
            duration_seconds=round(time.monotonic() - started, 6),
            executed_at=self._clock.now(),
            actuator=self._instance,
        )


def _remember(owed: dict[str, ExecutionResult], result: ExecutionResult) -> None:
    """Keep a result this instance still owes the bus or the bucket (bounded: the oldest are dropped)."""
    owed[result.decision_id] = result
    while len(owed) > _OWED_LIMIT:
        owed.pop(next(iter(owed)))


def _action(result: ExecutionResult, decision: IncomingDecision) -> Action:
    """The direction the decision asked for, measured from what the backend reported when it was read."""
    before = result.previous_replicas if result.previous_replicas is not None else decision.current_replicas
    after = decision.desired_replicas
    if after > before:
        return "scale_up"
    if after < before:
        return "scale_down"
    return "none"
