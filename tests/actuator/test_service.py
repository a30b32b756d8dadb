"""The actuator service end to end: decisions from the JetStream stream, real replica processes, results and
status on a real nats-server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.js.errors import NotFoundError
from prometheus_client import generate_latest

from services.actuator.kv import open_bucket
from services.actuator.lease import LeaseManager
from shared.bus import Bus
from shared.clock import SystemClock
from shared.schemas import Alert, DeadLetter, Decision, DecisionBatch, ExecutionResult, TargetStatus

Eventually = Callable[..., Awaitable[None]]


def actuator_config(command: list[str], **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "targets": [
            {
                "name": "web",
                "min_replicas": 1,
                "max_replicas": 8,
                "backend": {
                    "type": "local",
                    "command": command,
                    "initial_replicas": 1,
                    "health_interval_seconds": 0.1,
                    "grace_seconds": 2,
                },
            }
        ],
        "status_interval_seconds": 0.5,
        "status_poll_seconds": 0.05,
        "safety": {"min_change_interval_seconds": 0},
    }
    config.update(overrides)
    return config


def decision(
    desired: int, *, target: str = "web", decision_id: str = "", age: float = 0.0, current: int = 1
) -> Decision:
    return Decision(
        id=decision_id or uuid.uuid4().hex,
        target=target,
        current_replicas=current,
        desired_replicas=desired,
        reason="ScaleUpLimit" if desired > current else "DesiredWithinRange",
        decided_at=time.time(),
    )


async def publish_batch(bus: Bus, *decisions: Decision, batch_id: str = "") -> DecisionBatch:
    batch = DecisionBatch(
        batch_id=batch_id or uuid.uuid4().hex, decider="test", tick=1, decided_at=time.time(), decisions=decisions
    )
    await bus.publish_persistent(bus.subjects.decisions, batch, msg_id=batch.batch_id)
    return batch


def results_for(listener: Any, decision_id: str) -> list[ExecutionResult]:
    return [r for r in listener.messages if r.decision_id == decision_id]


async def test_a_decision_scales_the_local_target_and_reports_one_applied_result_and_the_new_status(
    bus: Bus, actuators: Any, listen: Any, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    results = await listen(bus.subjects.results_all, ExecutionResult)
    statuses = await listen(bus.subjects.status("web"), TargetStatus)
    service = await actuators.start(actuator_config(replica_command()))
    await eventually(lambda: any(s.ready_replicas == 1 for s in statuses.messages))

    wanted = decision(3)
    await publish_batch(bus, wanted)

    await eventually(lambda: len(results_for(results, wanted.id)) == 1)
    result = results_for(results, wanted.id)[0]
    assert result.status == "applied"
    assert (result.previous_replicas, result.requested_replicas, result.resulting_replicas) == (1, 3, 3)
    assert result.reason.startswith("ScaleUpLimit")
    assert result.actuator == "actuator-test" and not result.dry_run

    await eventually(lambda: any(s.ready_replicas == 3 for s in statuses.messages), within=15.0)
    latest = next(s for s in reversed(statuses.messages) if s.ready_replicas == 3)
    assert latest.backend == "local" and latest.spec_replicas == 3 and latest.current_replicas == 3
    assert len({r.endpoint for r in latest.replicas}) == 3
    assert all(r.pid > 0 and r.ready for r in latest.replicas)
    assert (await service.targets["web"].backend.read()).current_replicas == 3

    exposition = generate_latest(service._runtime.registry).decode()
    assert 'scalebus_actuations_total{action="scale_up",status="applied",target="web"} 1.0' in exposition
    assert 'scalebus_actuator_backend_call_seconds_count{backend="local",operation="scale",outcome="success"} 1.0' in (
        exposition
    )
    assert 'scalebus_actuator_breaker_state{target="web"} 0.0' in exposition
    assert 'scalebus_actuator_endpoint_successes_total{endpoint="local"} 2.0' in exposition
    assert "scalebus_actuator_pending_decisions 0.0" in exposition


async def test_status_is_published_periodically_even_without_changes(
    bus: Bus, actuators: Any, listen: Any, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    statuses = await listen(bus.subjects.status("web"), TargetStatus)
    await actuators.start(actuator_config(replica_command()))
    await eventually(lambda: any(s.ready_replicas == 1 for s in statuses.messages))
    seen = len(statuses.messages)
    # status_interval_seconds is 0.5: nothing changes, yet more statuses arrive.
    await eventually(lambda: len(statuses.messages) >= seen + 2, within=5.0)


async def test_redelivering_the_same_decision_ten_times_causes_one_change_also_across_restarts(
    bus: Bus, actuators: Any, listen: Any, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    results = await listen(bus.subjects.results_all, ExecutionResult)
    service = await actuators.start(actuator_config(replica_command()))
    wanted = decision(3)
    await publish_batch(bus, wanted)
    await eventually(lambda: len(results_for(results, wanted.id)) == 1)
    backend = service.targets["web"].backend
    # Someone else scales the target back to 2: a re-execution of the decision would restore 3.
    await backend.scale(2)

    for _ in range(9):
        await publish_batch(bus, wanted)  # distinct batches (distinct message ids), the same decision inside
    await eventually(lambda: service.metrics.skips.labels("web", "Duplicate")._value.get() == 9, within=15.0)
    assert (await backend.read()).spec_replicas == 2, "a duplicate decision must never act"
    assert service.metrics.actuations.labels("web", "scale_up", "applied")._value.get() == 1

    # One result for the decision, on the subject and in the results stream.
    assert len(results_for(results, wanted.id)) == 1
    stream = await bus.js.stream_info(bus.subjects.stream_name("results"))
    assert stream.state.messages == 1

    # Across a restart: a new instance remembers the decision through the KV bucket.
    await actuators.stop(service)
    restarted = await actuators.start(actuator_config(replica_command()), instance="actuator-restarted")
    await publish_batch(bus, wanted)
    await eventually(lambda: restarted.metrics.skips.labels("web", "Duplicate")._value.get() == 1, within=15.0)
    assert (await restarted.targets["web"].backend.read()).spec_replicas == 1
    assert restarted.metrics.actuations.labels("web", "scale_up", "applied")._value.get() == 0


async def test_dry_run_changes_nothing_and_reports_what_it_would_have_done(
    bus: Bus, actuators: Any, listen: Any, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    results = await listen(bus.subjects.results_all, ExecutionResult)
    service = await actuators.start(actuator_config(replica_command(), dry_run=True))
    wanted = decision(5)
    await publish_batch(bus, wanted)

    await eventually(lambda: len(results_for(results, wanted.id)) == 1)
    result = results_for(results, wanted.id)[0]
    assert result.dry_run
    assert result.status == "skipped"
    assert result.reason == "DryRun: would scale web 1 → 5 (ScaleUpLimit)"
    # In dry-run, resulting_replicas is what the target would have become.
    assert (result.previous_replicas, result.requested_replicas, result.resulting_replicas) == (1, 5, 5)
    assert (await service.targets["web"].backend.read()).spec_replicas == 1
    # Nothing written to NATS: no idempotency record (not even its bucket), no lease.
    for purpose in ("actuator_applied", "actuator_leases"):
        with pytest.raises(NotFoundError):
            await bus.js.key_value(bus.subjects.bucket_name(purpose))


async def test_dry_run_still_reports_decisions_a_real_actuator_already_applied(
    bus: Bus, actuators: Any, listen: Any, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    results = await listen(bus.subjects.results_all, ExecutionResult)
    real = await actuators.start(actuator_config(replica_command()), instance="actuator-real")
    wanted = decision(3)
    await publish_batch(bus, wanted)
    await eventually(lambda: len(results_for(results, wanted.id)) == 1)
    await actuators.stop(real)

    shadow = await actuators.start(
        actuator_config(replica_command(), dry_run=True, consumer={"durable": "shadow"}), instance="actuator-shadow"
    )
    await eventually(lambda: shadow.metrics.skips.labels("web", "Duplicate")._value.get() == 1, within=15.0)
    applied = await bus.js.key_value(bus.subjects.bucket_name("actuator_applied"))
    record = await applied.get(wanted.id)
    assert record.value is not None and b'"actuator":"actuator-real"' in record.value


async def test_bad_decisions_are_skipped_with_a_reason_while_good_ones_in_the_same_batch_run(
    bus: Bus, actuators: Any, listen: Any, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    results = await listen(bus.subjects.results_all, ExecutionResult)
    service = await actuators.start(actuator_config(replica_command()))
    now = time.time()
    raw_decisions = [
        {"id": "unknown", "target": "nosuch", "current_replicas": 1, "desired_replicas": 2, "decided_at": now},
        {"id": "negative", "target": "web", "current_replicas": 1, "desired_replicas": -3, "decided_at": now},
        {"id": "absurd", "target": "web", "current_replicas": 1, "desired_replicas": 1_000_000, "decided_at": now},
        {"id": "stale", "target": "web", "current_replicas": 1, "desired_replicas": 2, "decided_at": now - 3600},
        {
            "id": "good",
            "target": "web",
            "current_replicas": 1,
            "desired_replicas": 2,
            "decided_at": now,
            "reason": "ScaleUpLimit",
        },
    ]
    payload = msgspec.json.encode(
        {
            "kind": "decision_batch",
            "version": 1,
            "batch_id": "bad-input",
            "decider": "test",
            "tick": 1,
            "decided_at": now,
            "decisions": raw_decisions,
        }
    )
    await bus.js.publish(bus.subjects.decisions, payload)

    await eventually(lambda: len(results.messages) == 5, within=15.0)
    by_id = {r.decision_id: r for r in results.messages}
    assert by_id["unknown"].status == "skipped" and by_id["unknown"].reason.startswith("UnknownTarget:")
    assert "'nosuch' is not configured" in by_id["unknown"].reason
    assert by_id["negative"].status == "skipped" and by_id["negative"].reason.startswith("InvalidReplicas: negative")
    assert by_id["absurd"].status == "skipped" and "absurd" in by_id["absurd"].reason
    assert by_id["stale"].status == "skipped" and by_id["stale"].reason.startswith("StaleDecision:")
    assert by_id["good"].status == "applied" and by_id["good"].resulting_replicas == 2
    assert (await service.targets["web"].backend.read()).spec_replicas == 2


async def test_a_payload_that_is_no_decision_batch_is_dead_lettered_and_the_actuator_keeps_going(
    bus: Bus, actuators: Any, listen: Any, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    letters = await listen(bus.subjects.dead_letter("actuator"), DeadLetter)
    results = await listen(bus.subjects.results_all, ExecutionResult)
    await actuators.start(actuator_config(replica_command()))
    await bus.js.publish(bus.subjects.decisions, b"{not json")
    wanted = decision(2)
    await publish_batch(bus, wanted)

    await eventually(lambda: len(letters.messages) == 1 and len(results_for(results, wanted.id)) == 1)
    assert "not valid JSON" in letters.messages[0].reason
    assert results_for(results, wanted.id)[0].status == "applied"


async def test_stopping_the_service_stops_every_replica(
    bus: Bus,
    actuators: Any,
    replica_command: Callable[..., list[str]],
    eventually: Eventually,
    pid_alive: Callable[[int], bool],
) -> None:
    service = await actuators.start(actuator_config(replica_command()))
    await service.targets["web"].backend.scale(3)
    pids = [r.pid for r in (await service.targets["web"].backend.read()).replicas]
    assert len(pids) == 3 and all(pid_alive(pid) for pid in pids)
    await actuators.stop(service)
    await eventually(lambda: not any(pid_alive(pid) for pid in pids), within=5.0)


async def test_two_actuator_instances_on_one_target_never_both_act(
    bus: Bus, actuators: Any, listen: Any, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    """Two instances, each with its own durable consumer, so both receive every decision batch."""
    results = await listen(bus.subjects.results_all, ExecutionResult)

    def config(durable: str) -> dict[str, Any]:
        return actuator_config(replica_command(), consumer={"durable": durable, "lease_busy_delay_seconds": 0.2})

    first = await actuators.start(config("first"), instance="actuator-1")
    second = await actuators.start(config("second"), instance="actuator-2")
    wanted = [decision(n) for n in (3, 2, 4)]
    for item in wanted:
        await publish_batch(bus, item)
        await eventually(lambda item=item: len(results_for(results, item.id)) >= 1, within=15.0)

    def handled_everything(service: Any) -> bool:
        """Every decision reached its end on this instance too: applied here, or found recorded (duplicate)."""
        metrics = service.metrics
        done = metrics.skips.labels("web", "Duplicate")._value.get()
        done += sum(
            metrics.actuations.labels("web", action, "applied")._value.get() for action in ("scale_up", "scale_down")
        )
        return bool(done == len(wanted))

    await eventually(lambda: handled_everything(first) and handled_everything(second), within=15.0)
    spec = [(await s.targets["web"].backend.read()).spec_replicas for s in (first, second)]
    applied_by = {r.actuator for r in results.messages if r.status == "applied"}
    assert len(applied_by) == 1, f"only one instance may act, got {applied_by}"
    actor, bystander = (first, second) if applied_by == {"actuator-1"} else (second, first)
    assert (await actor.targets["web"].backend.read()).spec_replicas == 4
    assert (await bystander.targets["web"].backend.read()).spec_replicas == 1, spec
    assert all(len(results_for(results, item.id)) == 1 for item in wanted)


async def test_a_decision_put_back_until_its_last_delivery_because_of_a_foreign_lease_ends_with_one_skipped_result(
    bus: Bus, actuators: Any, listen: Any, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    """Another instance (here: the test) holds the target's lease throughout, so the actuator puts the batch back;
    on the consumer's last delivery it skips the decision instead, and that skip stands when the lease frees."""
    leases = await open_bucket(bus.js, bus.subjects.bucket_name("actuator_leases"))
    foreign = LeaseManager(leases, holder="actuator-elsewhere", ttl=60.0, clock=SystemClock())
    assert (await foreign.acquire("web")).acquired
    results = await listen(bus.subjects.results_all, ExecutionResult)
    consumer = {"max_deliver": 3, "lease_busy_delay_seconds": 0.1}
    service = await actuators.start(actuator_config(replica_command(), consumer=consumer))
    wanted = decision(3)
    await publish_batch(bus, wanted)

    await eventually(lambda: len(results_for(results, wanted.id)) == 1, within=15.0)
    [result] = results_for(results, wanted.id)
    assert result.status == "skipped"
    assert result.reason.startswith("LeaseHeldElsewhere: actuator-elsewhere holds the lease of web")
    assert service.metrics.lease_busy.labels("web")._value.get() == 3, "put back twice, skipped on delivery 3"

    await foreign.release("web")
    await publish_batch(bus, wanted)  # the same decision again, now that the lease is free
    await eventually(lambda: service.metrics.skips.labels("web", "Duplicate")._value.get() == 1, within=15.0)
    assert (await service.targets["web"].backend.read()).spec_replicas == 1, "a skipped decision never acts later"
    assert len(results_for(results, wanted.id)) == 1


async def test_three_failed_decisions_open_the_breaker_publish_an_alert_and_pause_the_target(
    bus: Bus, actuators: Any, listen: Any, eventually: Eventually, tmp_path: Path
) -> None:
    """The injected failure: the target's command cannot be started, a permanent error on every scale."""
    results = await listen(bus.subjects.results_all, ExecutionResult)
    alerts = await listen(bus.subjects.alerts("actuator"), Alert)
    statuses = await listen(bus.subjects.status("web"), TargetStatus)
    config = actuator_config([str(tmp_path / "no-such-command")])
    config["targets"][0].update(min_replicas=0)
    config["targets"][0]["backend"].update(initial_replicas=0, health_path="")
    service = await actuators.start(config)

    wanted = [decision(n) for n in (1, 2, 3, 4)]
    for item in wanted:
        await publish_batch(bus, item)
        await eventually(lambda item=item: len(results_for(results, item.id)) == 1, within=15.0)
    outcomes = [results_for(results, item.id)[0] for item in wanted]
    assert [r.status for r in outcomes] == ["failed", "failed", "failed", "skipped"]
    assert "cannot start web-0" in outcomes[0].error
    assert outcomes[3].reason.startswith("BreakerOpen: target paused after 3 consecutive failures")

    await eventually(lambda: len(alerts.messages) == 1)
    alert = alerts.messages[0]
    assert (alert.target, alert.code, alert.severity) == ("web", "BreakerOpen", "critical")
    await eventually(lambda: any(s.paused and s.breaker == "open" for s in statuses.messages))
    assert service.metrics.alerts.labels("BreakerOpen")._value.get() == 1


class SlowScale:
    """Wraps a target's backend so that each change takes ``seconds`` (a slow API server, a long retry)."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self._inner = inner
        self._seconds = seconds
        self.kind, self.endpoint, self.success_status, self.changed = (
            inner.kind,
            inner.endpoint,
            inner.success_status,
            inner.changed,
        )

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()

    async def read(self) -> Any:
        return await self._inner.read()

    async def scale(self, replicas: int) -> Any:
        await asyncio.sleep(self._seconds)
        return await self._inner.scale(replicas)


async def test_a_batch_taking_longer_than_ack_wait_is_not_handed_to_another_instance_meanwhile(
    bus: Bus, actuators: Any, listen: Any, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    """Two instances share one durable consumer; the batch's change takes 2.5 ack_waits.  The handling instance
    keeps the batch marked in progress, so JetStream never redelivers it to the other one."""
    results = await listen(bus.subjects.results_all, ExecutionResult)
    consumer = {"durable": "shared", "ack_wait_seconds": 1.0, "lease_busy_delay_seconds": 0.1}
    pair = [
        await actuators.start(actuator_config(replica_command(), consumer=consumer), instance=f"actuator-{n}")
        for n in (1, 2)
    ]
    for service in pair:
        service.targets["web"].backend = SlowScale(service.targets["web"].backend, 2.5)
    wanted = decision(2)
    await publish_batch(bus, wanted)

    await eventually(lambda: len(results_for(results, wanted.id)) == 1, within=15.0)
    assert results_for(results, wanted.id)[0].status == "applied"
    await publish_batch(bus, decision(1, decision_id="marker"))  # handled after anything redelivered before it
    await eventually(lambda: len(results_for(results, "marker")) == 1, within=15.0)
    redelivered = sum(s.metrics.skips.labels("web", "Duplicate")._value.get() for s in pair)
    assert redelivered == 0, "the batch came back while it was being handled"
