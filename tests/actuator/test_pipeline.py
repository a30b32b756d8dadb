"""The decision pipeline with a backend whose failures the test scripts, on a real nats-server (KV buckets,
alerts) and a manual clock: rate limit, staleness, retries, breaker, idempotency across restarts, leases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from services.actuator.backends.base import BackendError, Observed, PermanentBackendError, TransientBackendError
from services.actuator.breaker import CircuitBreaker
from services.actuator.config import ActuatorConfig
from services.actuator.executor import Executor, LeaseBusy, TargetRuntime
from services.actuator.idempotency import KvIdempotencyStore
from services.actuator.intake import IncomingBatch, IncomingDecision
from services.actuator.kv import open_bucket
from services.actuator.lease import LeaseManager
from services.actuator.metrics import ActuatorMetrics
from shared.bus import Bus
from shared.clock import ManualClock
from shared.errors import RetryableError
from shared.schemas import Alert, ExecutionResult

Eventually = Callable[..., Awaitable[None]]


class ScriptedBackend:
    """A backend whose next failures the test queues up: the way to inject faults into the pipeline."""

    kind = "scripted"
    endpoint = "scripted"
    success_status: int | None = 200

    def __init__(self, replicas: int = 1) -> None:
        self.spec = replicas
        self.scale_calls: list[int] = []
        self.scale_failures: list[BackendError] = []
        self.read_failures: list[BackendError] = []
        self.changed = asyncio.Event()

    def _observed(self) -> Observed:
        return Observed(spec_replicas=self.spec, current_replicas=self.spec, ready_replicas=self.spec)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def read(self) -> Observed:
        if self.read_failures:
            raise self.read_failures.pop(0)
        return self._observed()

    async def scale(self, replicas: int) -> Observed:
        self.scale_calls.append(replicas)
        if self.scale_failures:
            raise self.scale_failures.pop(0)
        self.spec = replicas
        return self._observed()


CONFIG = {
    "targets": [{"name": "web", "min_replicas": 1, "max_replicas": 8, "backend": {"type": "local", "command": ["x"]}}],
    "safety": {
        "max_decision_age_seconds": 30,
        "max_step": 4,
        "min_change_interval_seconds": 5,
        "retry": {"attempts": 3, "base_delay_seconds": 0.2, "max_delay_seconds": 2},
        "breaker": {"failure_threshold": 3, "open_seconds": 30},
        "lease": {"ttl_seconds": 15, "renew_interval_seconds": 5},
    },
}


@dataclass
class Actuator:
    """One executor as an actuator instance runs it, with what it published."""

    executor: Executor
    backend: ScriptedBackend
    metrics: ActuatorMetrics
    leases: LeaseManager
    results: list[ExecutionResult] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    async def decide(self, desired: int, *, decided_at: float, decision_id: str = "") -> ExecutionResult | LeaseBusy:
        return await self.executor.execute(
            IncomingDecision(
                id=decision_id or uuid.uuid4().hex,
                target="web",
                current_replicas=self.backend.spec,
                desired_replicas=desired,
                reason="Test",
                decided_at=decided_at,
            )
        )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_actuator(bus: Bus, clock: ManualClock) -> Callable[..., Awaitable[Actuator]]:
    async def make(instance: str = "a", *, backend: ScriptedBackend | None = None, **overrides: Any) -> Actuator:
        config = msgspec.convert({**CONFIG, **overrides}, ActuatorConfig)
        backend = backend or ScriptedBackend()
        metrics = ActuatorMetrics(CollectorRegistry(), "scalebus")
        applied = await open_bucket(bus.js, bus.subjects.bucket_name("actuator_applied"))
        lease_kv = await open_bucket(bus.js, bus.subjects.bucket_name("actuator_leases"))
        leases = LeaseManager(lease_kv, holder=instance, ttl=config.safety.lease.ttl_seconds, clock=clock)
        breaker = CircuitBreaker(failure_threshold=3, open_seconds=30.0, clock=clock)
        holder: dict[str, Actuator] = {}

        async def publish_result(result: ExecutionResult) -> None:
            holder["a"].results.append(result)

        async def publish_alert(alert: Alert) -> None:
            await bus.publish(bus.subjects.alerts("actuator"), alert)

        async def sleep(seconds: float) -> None:
            holder["a"].sleeps.append(seconds)

        executor = Executor(
            config=config,
            targets={"web": TargetRuntime(config=config.targets[0], backend=backend, breaker=breaker)},
            idempotency=KvIdempotencyStore(applied),
            leases=leases,
            metrics=metrics,
            clock=clock,
            instance=instance,
            publish_result=publish_result,
            publish_alert=publish_alert,
            sleep=sleep,
        )
        holder["a"] = Actuator(executor=executor, backend=backend, metrics=metrics, leases=leases)
        return holder["a"]

    return make


def applied(result: ExecutionResult | LeaseBusy) -> ExecutionResult:
    assert isinstance(result, ExecutionResult), f"expected a result, got {result}"
    return result


async def test_at_most_one_change_per_interval_per_target(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    actuator = await make_actuator()
    assert applied(await actuator.decide(3, decided_at=clock.now())).status == "applied"
    clock.advance(1.0)
    limited = applied(await actuator.decide(5, decided_at=clock.now()))
    assert limited.status == "skipped" and limited.reason.startswith("RateLimited:")
    assert "next change allowed in 4.0s" in limited.reason
    clock.advance(4.0)
    assert applied(await actuator.decide(5, decided_at=clock.now())).status == "applied"
    assert actuator.backend.scale_calls == [3, 5]


async def test_a_large_jump_is_cut_to_the_maximum_step_and_the_bounds(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    actuator = await make_actuator()
    result = applied(await actuator.decide(50, decided_at=clock.now()))
    assert result.status == "applied" and result.resulting_replicas == 5
    assert "clamped to max_replicas 8" in result.reason and "step limited to 4" in result.reason
    clock.advance(10.0)
    result = applied(await actuator.decide(0, decided_at=clock.now()))
    assert result.resulting_replicas == 1, "never below min_replicas"


async def test_a_stale_decision_is_skipped_and_never_reaches_the_backend(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    actuator = await make_actuator()
    decided_at = clock.now()
    clock.advance(31.0)
    result = applied(await actuator.decide(4, decided_at=decided_at))
    assert result.status == "skipped" and result.reason == "StaleDecision: decided 31.0s ago, older than the 30s limit"
    assert actuator.backend.scale_calls == []


async def test_an_older_decision_arriving_after_a_newer_one_is_superseded(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    actuator = await make_actuator()
    older = clock.now()
    clock.advance(1.0)
    assert applied(await actuator.decide(3, decided_at=clock.now())).status == "applied"
    clock.advance(10.0)
    result = applied(await actuator.decide(6, decided_at=older))
    assert result.reason.startswith("Superseded:")
    assert actuator.backend.scale_calls == [3]


async def test_transient_backend_errors_are_retried_with_backoff_and_counted_per_endpoint(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    actuator = await make_actuator()
    actuator.backend.scale_failures = [
        TransientBackendError("service unavailable", status=503),
        TransientBackendError("read timed out"),
    ]
    result = applied(await actuator.decide(3, decided_at=clock.now()))
    assert result.status == "applied"
    assert actuator.backend.scale_calls == [3, 3, 3]
    assert len(actuator.sleeps) == 2 and 0.1 <= actuator.sleeps[0] <= 0.2 and 0.2 <= actuator.sleeps[1] <= 0.4
    m = actuator.metrics
    assert m.endpoint_events.labels("scripted")._value.get() == 4  # one read, three scale attempts
    assert m.endpoint_successes.labels("scripted")._value.get() == 2
    assert m.endpoint_failures.labels("scripted")._value.get() == 1
    assert m.endpoint_errors.labels("scripted")._value.get() == 1
    assert m.endpoint_status_codes.labels("scripted", "503")._value.get() == 1
    assert m.endpoint_status_codes.labels("scripted", "200")._value.get() == 2
    assert m.backend_retries.labels("scripted")._value.get() == 2
    assert m.endpoint_pending.labels("scripted")._value.get() == 0


async def test_a_permanent_backend_error_fails_the_decision_without_retry(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    actuator = await make_actuator()
    actuator.backend.scale_failures = [PermanentBackendError("deployments.apps/scale is forbidden", status=403)]
    result = applied(await actuator.decide(3, decided_at=clock.now()))
    assert result.status == "failed"
    assert result.error == "permanent backend error (HTTP 403): deployments.apps/scale is forbidden"
    assert actuator.backend.scale_calls == [3] and actuator.sleeps == []
    assert actuator.metrics.actuations.labels("web", "scale_up", "failed")._value.get() == 1


async def test_three_failures_open_the_breaker_publish_an_alert_and_pause_the_target_until_half_open(
    bus: Bus,
    make_actuator: Callable[..., Awaitable[Actuator]],
    clock: ManualClock,
    listen: Any,
    eventually: Eventually,
) -> None:
    alerts = await listen(bus.subjects.alerts("actuator"), Alert)
    actuator = await make_actuator()
    actuator.backend.scale_failures = [PermanentBackendError("boom", status=500 + i) for i in range(3)]
    for _ in range(3):
        assert applied(await actuator.decide(3, decided_at=clock.now())).status == "failed"
        clock.advance(1.0)

    await eventually(lambda: len(alerts.messages) == 1)
    alert = alerts.messages[0]
    assert (alert.service, alert.target, alert.code, alert.severity) == ("actuator", "web", "BreakerOpen", "critical")
    assert "after 3 consecutive failures" in alert.message
    assert actuator.metrics.breaker_opened.labels("web")._value.get() == 1
    assert actuator.metrics.breaker_state.labels("web")._value.get() == 2

    paused = applied(await actuator.decide(3, decided_at=clock.now()))
    assert paused.status == "skipped" and paused.reason.startswith("BreakerOpen:")
    assert len(actuator.backend.scale_calls) == 3, "an open breaker keeps the backend untouched"

    clock.advance(30.0)
    trial = applied(await actuator.decide(3, decided_at=clock.now()))
    assert trial.status == "applied"
    assert actuator.metrics.breaker_state.labels("web")._value.get() == 0
    assert len(alerts.messages) == 1


async def test_a_decision_applied_before_a_restart_is_not_applied_again_after_it(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    first = await make_actuator("actuator-1")
    decision_id = uuid.uuid4().hex
    assert applied(await first.decide(4, decided_at=clock.now(), decision_id=decision_id)).status == "applied"

    backend = ScriptedBackend(replicas=1)  # the restarted instance sees the target at 1 again
    second = await make_actuator("actuator-2", backend=backend)
    for _ in range(10):
        again = applied(await second.decide(4, decided_at=clock.now(), decision_id=decision_id))
        assert again.status == "applied" and again.actuator == "actuator-1", "the first outcome is returned, not redone"
    assert backend.scale_calls == []
    assert second.metrics.skips.labels("web", "Duplicate")._value.get() == 10


async def test_two_instances_racing_on_one_target_never_both_act(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    """Each instance gets its own decisions for the same target (as with two deciders, or two consumers of
    diverging streams), so idempotency alone cannot save the day: only the lease keeps the second one out."""
    one = await make_actuator("actuator-1")
    two = await make_actuator("actuator-2")

    def batch(round_number: int) -> IncomingBatch:
        return IncomingBatch(
            batch_id=uuid.uuid4().hex,
            decisions=(
                IncomingDecision(
                    id=uuid.uuid4().hex,
                    target="web",
                    current_replicas=1,
                    desired_replicas=2 + round_number % 5,
                    decided_at=clock.now(),
                ),
            ),
        )

    for round_number in range(10):
        racers = [one, two] if round_number % 2 else [two, one]
        outcomes = await asyncio.gather(
            *(racer.executor.handle_batch(batch(round_number)) for racer in racers), return_exceptions=True
        )
        assert sum(isinstance(o, RetryableError) for o in outcomes) == 1, "the instance without the lease backs off"
        clock.advance(6.0)
    assert one.backend.scale_calls == [] or two.backend.scale_calls == [], "only the lease holder ever acts"
    assert len(one.backend.scale_calls) + len(two.backend.scale_calls) == 10


async def test_a_lease_is_exclusive_renewable_and_expires_when_its_holder_stops_renewing(
    bus: Bus, clock: ManualClock
) -> None:
    kv = await open_bucket(bus.js, bus.subjects.bucket_name("actuator_leases"))
    a = LeaseManager(kv, holder="a", ttl=15.0, clock=clock)
    b = LeaseManager(kv, holder="b", ttl=15.0, clock=clock)

    assert (await a.acquire("web")).acquired
    refused = await b.acquire("web")
    assert not refused.acquired and refused.holder == "a"

    clock.advance(10.0)
    await a.renew_all()  # the holder renews: the lease now runs until t+25
    clock.advance(10.0)
    assert not (await b.acquire("web")).acquired

    # a dies (no more renewals): 15 s after its last renewal the lease is free to take over.
    clock.advance(5.1)
    assert (await b.acquire("web")).acquired
    assert not (await a.acquire("web")).acquired
    assert a.held() == [] and b.held() == ["web"]

    await b.release("web")
    assert (await a.acquire("web")).acquired, "a released lease is free at once"


async def test_concurrent_lease_claims_have_exactly_one_winner(bus: Bus, clock: ManualClock) -> None:
    kv = await open_bucket(bus.js, bus.subjects.bucket_name("actuator_leases"))
    managers = [LeaseManager(kv, holder=f"i{n}", ttl=15.0, clock=clock) for n in range(4)]
    for round_number in range(15):
        outcomes = await asyncio.gather(*(m.acquire(f"t{round_number}") for m in managers))
        assert sum(o.acquired for o in outcomes) == 1


class FlakyStore:
    """The idempotency store over the real bucket, losing its connection once (as during a NATS blip)."""

    def __init__(self, inner: KvIdempotencyStore) -> None:
        self.inner = inner
        self.fail_next_claim = True

    async def lookup(self, decision_id: str) -> Any:
        return await self.inner.lookup(decision_id)

    async def claim(self, decision_id: str, *, actuator: str, at: float) -> Any:
        if self.fail_next_claim:
            self.fail_next_claim = False
            raise ConnectionError("nats: connection closed")
        return await self.inner.claim(decision_id, actuator=actuator, at=at)

    async def complete(self, decision_id: str, claim: Any, record: Any) -> None:
        await self.inner.complete(decision_id, claim, record)


async def test_a_batch_interrupted_by_a_bus_failure_is_redelivered_and_nothing_runs_twice(
    bus: Bus, make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    actuator = await make_actuator()
    store = FlakyStore(actuator.executor._idempotency)  # type: ignore[arg-type]
    actuator.executor._idempotency = store
    batch = IncomingBatch(
        batch_id="b",
        decisions=(
            IncomingDecision(
                id=uuid.uuid4().hex, target="web", current_replicas=1, desired_replicas=3, decided_at=clock.now()
            ),
        ),
    )
    with pytest.raises(RetryableError, match="batch interrupted"):
        await actuator.executor.handle_batch(batch)
    assert actuator.backend.scale_calls == []
    assert actuator.metrics.pending._value.get() == 0

    results = await actuator.executor.handle_batch(batch)  # the redelivery
    assert [r.status for r in results] == ["applied"]
    clock.advance(10.0)  # past the rate limit: only idempotency keeps the duplicate out
    assert await actuator.executor.handle_batch(batch) == results  # and a duplicate of it
    assert actuator.backend.scale_calls == [3]
    assert actuator.results == results


def web_batch(clock: ManualClock, desired: int = 3) -> IncomingBatch:
    return IncomingBatch(
        batch_id=uuid.uuid4().hex,
        decisions=(
            IncomingDecision(
                id=uuid.uuid4().hex, target="web", current_replicas=1, desired_replicas=desired, decided_at=clock.now()
            ),
        ),
    )


async def test_on_its_last_delivery_a_decision_for_a_target_leased_elsewhere_is_skipped_once_and_never_acted_on(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    """Put back while another instance holds the lease, the decision would otherwise run out of deliveries without
    a result.  The skip is claimed under the decision id, so the lease holder later finds it recorded: one result,
    and no instance both skips and acts."""
    holder = await make_actuator("actuator-1")
    bystander = await make_actuator("actuator-2")
    assert (await holder.leases.acquire("web")).acquired
    batch = web_batch(clock)

    with pytest.raises(RetryableError, match="lease busy"):
        await bystander.executor.handle_batch(batch)
    assert bystander.results == []

    [skipped] = await bystander.executor.handle_batch(batch, last_delivery=True)
    assert skipped.status == "skipped" and skipped.reason.startswith("LeaseHeldElsewhere: actuator-1 holds the lease")
    assert bystander.results == [skipped]

    [recorded] = await holder.executor.handle_batch(batch)  # the holder's own delivery of the same decision
    assert recorded == skipped
    assert holder.backend.scale_calls == [] and holder.results == []
    assert bystander.backend.scale_calls == []


async def test_a_last_delivery_of_a_decision_the_lease_holder_already_applied_publishes_nothing(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    holder = await make_actuator("actuator-1")
    bystander = await make_actuator("actuator-2")
    batch = web_batch(clock)
    [result] = await holder.executor.handle_batch(batch)
    assert result.status == "applied"

    assert await bystander.executor.handle_batch(batch, last_delivery=True) == [result]
    assert bystander.results == [] and bystander.backend.scale_calls == []
    assert holder.results == [result]


async def test_a_decision_redelivered_after_it_became_stale_keeps_its_one_result(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    """An unacknowledged batch comes back after ack_wait, possibly later than the staleness limit: the decision's
    recorded outcome stands, no second (StaleDecision) result is published."""
    actuator = await make_actuator()
    batch = web_batch(clock)
    [first] = await actuator.executor.handle_batch(batch)
    clock.advance(120.0)
    assert await actuator.executor.handle_batch(batch) == [first]
    assert actuator.results == [first] and first.status == "applied"


async def test_a_rejected_decision_delivered_again_gets_no_second_result(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    actuator = await make_actuator()
    unknown = IncomingDecision(
        id=uuid.uuid4().hex, target="nosuch", current_replicas=1, desired_replicas=2, decided_at=clock.now()
    )
    first = applied(await actuator.executor.execute(unknown))
    again = applied(await actuator.executor.execute(unknown))
    assert first.reason.startswith("UnknownTarget:") and again == first
    assert actuator.results == [first]
    skips = actuator.metrics.skips
    assert skips.labels("_unknown", "Duplicate")._value.get() == 1, "unknown targets share one metric label"
    assert skips.labels("nosuch", "Duplicate")._value.get() == 0


async def test_a_decision_claimed_by_an_instance_that_died_mid_way_is_put_back_then_settled_with_one_result(
    bus: Bus, make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    """The claimer may still be acting while it holds the target's lease (the decision comes back later); once its
    lease has lapsed the claim is orphaned, and the decision ends with one result saying the outcome is unknown."""
    store = KvIdempotencyStore(await open_bucket(bus.js, bus.subjects.bucket_name("actuator_applied")))
    dead_leases = LeaseManager(
        await open_bucket(bus.js, bus.subjects.bucket_name("actuator_leases")), holder="dead", ttl=15.0, clock=clock
    )
    actuator = await make_actuator("actuator-2")
    batch = web_batch(clock)
    assert (await dead_leases.acquire("web")).acquired
    await store.claim(batch.decisions[0].id, actuator="actuator-dead", at=clock.now())

    with pytest.raises(RetryableError):
        await actuator.executor.handle_batch(batch)  # the claimer may be acting right now
    [pending] = await actuator.executor.handle_batch(batch, last_delivery=True)
    assert pending.reason == "Duplicate: being handled by actuator-dead"
    assert actuator.results == [], "the claimer publishes its own result"

    clock.advance(16.0)  # the claimer's lease lapses: it is gone
    [settled] = await actuator.executor.handle_batch(batch)
    assert settled.status == "skipped" and settled.reason.startswith("Duplicate: decision claimed by actuator-dead")
    assert "whether it acted is unknown" in settled.reason
    assert await actuator.executor.handle_batch(batch) == [settled]
    assert actuator.results == [settled] and actuator.backend.scale_calls == []


class UnrecordingStore(FlakyStore):
    """Loses the connection once while recording an outcome (after the claim, before the result is stored)."""

    def __init__(self, inner: KvIdempotencyStore) -> None:
        super().__init__(inner)
        self.fail_next_claim = False
        self.fail_next_complete = True

    async def complete(self, decision_id: str, claim: Any, record: Any) -> None:
        if self.fail_next_complete:
            self.fail_next_complete = False
            raise ConnectionError("nats: connection closed")
        await self.inner.complete(decision_id, claim, record)

    async def settle(self, decision_id: str, record: Any) -> Any:
        return await self.inner.settle(decision_id, record)


async def test_an_outcome_that_could_not_be_recorded_is_recorded_when_its_decision_comes_back(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    actuator = await make_actuator()
    store = UnrecordingStore(actuator.executor._idempotency)  # type: ignore[arg-type]
    actuator.executor._idempotency = store
    batch = web_batch(clock)
    [first] = await actuator.executor.handle_batch(batch)
    assert first.status == "applied"
    assert (await store.inner.lookup(first.decision_id)).state == "claimed"  # type: ignore[union-attr]

    assert await actuator.executor.handle_batch(batch) == [first]
    record = await store.inner.lookup(first.decision_id)
    assert record is not None and record.state == "done" and record.result == first
    assert actuator.results == [first] and actuator.backend.scale_calls == [3]


async def test_a_result_the_bus_would_not_take_is_published_when_its_batch_comes_back(
    make_actuator: Callable[..., Awaitable[Actuator]], clock: ManualClock
) -> None:
    """Recorded but not published, the decision would end without a result: the batch is put back instead, and its
    redelivery publishes the recorded result (once) without acting again."""
    actuator = await make_actuator()
    keep = actuator.executor._publish_result
    failures = [ConnectionError("nats: connection closed")]

    async def flaky_publish(result: ExecutionResult) -> None:
        if failures:
            raise failures.pop()
        await keep(result)

    actuator.executor._publish_result = flaky_publish
    batch = web_batch(clock)
    with pytest.raises(RetryableError, match="batch interrupted"):
        await actuator.executor.handle_batch(batch)
    assert actuator.results == [] and actuator.backend.scale_calls == [3]

    clock.advance(10.0)
    [result] = await actuator.executor.handle_batch(batch)
    assert result.status == "applied" and actuator.results == [result]
    assert await actuator.executor.handle_batch(batch) == [result]
    assert actuator.results == [result] and actuator.backend.scale_calls == [3]
