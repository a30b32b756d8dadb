"""The decider service against a real nats-server: status and snapshots in, DecisionBatches out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.decider.service import Decider
from shared.bus import Bus
from shared.clock import ManualClock
from shared.schemas import (
    Alert,
    DeadLetter,
    DeciderControl,
    DecisionBatch,
    MetricSample,
    MetricSnapshot,
    ReplicaStatus,
    TargetStatus,
)

DeciderFactory = Callable[..., Awaitable[Decider]]


def web_status(now: float, replicas: int) -> TargetStatus:
    return TargetStatus(
        target="web",
        backend="local",
        spec_replicas=replicas,
        current_replicas=replicas,
        ready_replicas=replicas,
        observed_at=now,
        replicas=tuple(
            ReplicaStatus(
                name=f"web-{i}", phase="Running", ready=True, started_at=now - 600, ready_changed_at=now - 590
            )
            for i in range(replicas)
        ),
    )


def web_snapshot(now: float, per_pod: dict[str, float], *, urgent: bool = False) -> MetricSnapshot:
    return MetricSnapshot(
        target="web",
        collected_at=now,
        samples=tuple(
            MetricSample(name="demo_requests_per_second", value=v, timestamp=now, labels={"pod": pod})
            for pod, v in per_pod.items()
        ),
        urgent=urgent,
    )


async def wait_for(predicate: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll a condition (bounded): messages travel through a real server, so delivery takes a moment."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_snapshot_above_target_yields_a_batch_with_the_hpa_replica_count(
    bus: Bus, make_decider: DeciderFactory, clock: ManualClock
) -> None:
    """Two pods at 12 and 8 req/s against an averageValue of 5: ratio 2, so ceil(2 * 2) = 4 replicas,
    published on the decisions stream with an explanation of inputs, winner and raw recommendation."""
    decider = await make_decider()
    now = clock.now()
    await bus.publish(bus.subjects.status("web"), web_status(now, 2))
    await bus.publish(bus.subjects.snapshots("web"), web_snapshot(now, {"web-0": 12.0, "web-1": 8.0}))
    view = decider._view("web")
    await wait_for(lambda: view.status is not None and view.snapshot is not None)

    sub = await bus.js.pull_subscribe(
        bus.subjects.decisions,
        durable="test-reader",
        stream=bus.subjects.stream_name("decisions"),
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    batch = await decider.run_tick()
    assert batch is not None
    messages = await sub.fetch(1, timeout=10)
    stored = msgspec.json.decode(messages[0].data, type=DecisionBatch)
    assert stored.batch_id == batch.batch_id
    (decision,) = stored.decisions
    assert (decision.target, decision.current_replicas, decision.desired_replicas) == ("web", 2, 4)
    assert decision.reason == "DesiredWithinRange"
    assert decision.explanation is not None
    assert decision.explanation.winner == "pods metric demo_requests_per_second"
    assert decision.explanation.raw_recommendation == 4
    (metric_input,) = decision.explanation.inputs
    assert (metric_input.value, metric_input.target, metric_input.proposal) == (10.0, 5.0, 4)


async def test_an_unchanged_target_publishes_nothing_on_the_next_tick(
    bus: Bus, make_decider: DeciderFactory, clock: ManualClock
) -> None:
    """At target (5 req/s per pod) the desired count equals the current one; after the first decision
    (its reason is new) the next tick has nothing to say."""
    decider = await make_decider()
    now = clock.now()
    await bus.publish(bus.subjects.status("web"), web_status(now, 2))
    await bus.publish(bus.subjects.snapshots("web"), web_snapshot(now, {"web-0": 5.0, "web-1": 5.0}))
    view = decider._view("web")
    await wait_for(lambda: view.status is not None and view.snapshot is not None)
    first = await decider.run_tick()
    assert first is not None and first.decisions[0].desired_replicas == 2
    clock.advance(1)
    assert await decider.run_tick() is None


async def test_a_malformed_snapshot_is_dead_lettered_and_the_service_keeps_running(
    bus: Bus, make_decider: DeciderFactory, clock: ManualClock
) -> None:
    decider = await make_decider()
    letters: asyncio.Queue[DeadLetter] = asyncio.Queue()

    async def on_letter(msg: object) -> None:
        await letters.put(msgspec.json.decode(msg.data, type=DeadLetter))  # type: ignore[attr-defined]

    await bus.nc.subscribe(bus.subjects.dead_letter("decider"), cb=on_letter)
    await bus.subscriptions_registered()
    await bus.nc.publish(bus.subjects.snapshots("web"), b'{"kind": "metric_snapshot", "target": "web"}')
    letter = await asyncio.wait_for(letters.get(), timeout=10)
    assert letter.subject == bus.subjects.snapshots("web")
    assert "collected_at" in letter.reason
    # still serving: a good snapshot afterwards is taken
    await bus.publish(bus.subjects.snapshots("web"), web_snapshot(clock.now(), {"web-0": 1.0}))
    view = decider._view("web")
    await wait_for(lambda: view.snapshot is not None)


async def test_a_snapshot_for_another_target_on_a_subject_is_rejected_to_the_dead_letter_subject(
    bus: Bus, make_decider: DeciderFactory, clock: ManualClock
) -> None:
    await make_decider()
    letters: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_letter(msg: object) -> None:
        await letters.put(msg.data)  # type: ignore[attr-defined]

    await bus.nc.subscribe(bus.subjects.dead_letter("decider"), cb=on_letter)
    await bus.subscriptions_registered()
    await bus.publish(bus.subjects.snapshots("api"), web_snapshot(clock.now(), {"web-0": 1.0}))
    letter = msgspec.json.decode(await asyncio.wait_for(letters.get(), timeout=10), type=DeadLetter)
    assert "arrived on" in letter.reason


async def test_a_rejected_reload_is_logged_counted_and_alerted_while_the_old_policy_stays(
    bus: Bus, make_decider: DeciderFactory, policy_dir: Path
) -> None:
    decider = await make_decider(reload_interval_seconds=0.05)
    alerts: asyncio.Queue[Alert] = asyncio.Queue()

    async def on_alert(msg: Msg) -> None:
        await alerts.put(msgspec.json.decode(msg.data, type=Alert))

    await bus.nc.subscribe(bus.subjects.alerts("decider"), cb=on_alert)
    await bus.subscriptions_registered()
    web = policy_dir / "web.yaml"
    web.write_text(web.read_text().replace("maxReplicas: 8", "maxReplicas: many"))
    alert = await asyncio.wait_for(alerts.get(), timeout=10)
    assert alert.code == "PolicyRejected"
    assert "spec.maxReplicas" in alert.message
    assert decider.registry.policies["web"].max_replicas == 8
    assert decider.metrics.policy_reload_failures._value.get() == 1


async def decisions_reader(bus: Bus, name: str) -> JetStreamContext.PullSubscription:
    return await bus.js.pull_subscribe(
        bus.subjects.decisions,
        durable=name,
        stream=bus.subjects.stream_name("decisions"),
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )


async def test_an_urgent_snapshot_is_decided_at_once_without_waiting_for_the_tick(
    bus: Bus, make_decider: DeciderFactory, clock: ManualClock
) -> None:
    decider = await make_decider()  # the tick loop sleeps for an hour
    reader = await decisions_reader(bus, "urgent-reader")
    now = clock.now()
    await bus.publish(bus.subjects.status("web"), web_status(now, 2))
    view = decider._view("web")
    await wait_for(lambda: view.status is not None)
    await bus.publish(bus.subjects.snapshots("web"), web_snapshot(now, {"web-0": 30.0, "web-1": 30.0}, urgent=True))
    (message,) = await reader.fetch(1, timeout=10)
    batch = msgspec.json.decode(message.data, type=DecisionBatch)
    assert [(d.target, d.desired_replicas) for d in batch.decisions] == [("web", 6)]


RULE_POLICY = """\
apiVersion: scalebus.dev/v1
kind: ScalingPolicy
metadata: {name: web}
spec:
  scaleTargetRef: {name: web}
  minReplicas: 1
  maxReplicas: 8
  rules:
    - name: hot
      when: {all: [{metric: demo_requests_per_second, aggregate: sum, op: ">", value: 50}]}
      action: {add: 2}
"""


async def test_a_snapshot_crossing_a_rule_threshold_is_decided_at_once(
    bus: Bus, make_decider: DeciderFactory, clock: ManualClock, policy_dir: Path
) -> None:
    (policy_dir / "web.yaml").write_text(RULE_POLICY)
    decider = await make_decider()
    reader = await decisions_reader(bus, "crossing-reader")
    now = clock.now()
    await bus.publish(bus.subjects.status("web"), web_status(now, 2))
    view = decider._view("web")
    await wait_for(lambda: view.status is not None)
    await bus.publish(bus.subjects.snapshots("web"), web_snapshot(now, {"web-0": 40.0, "web-1": 30.0}))
    (message,) = await reader.fetch(1, timeout=10)
    (decision,) = msgspec.json.decode(message.data, type=DecisionBatch).decisions
    assert decision.desired_replicas == 4
    assert decision.explanation is not None and decision.explanation.winner == "rule hot (+2)"


async def test_pause_and_resume_by_control_message(bus: Bus, make_decider: DeciderFactory, clock: ManualClock) -> None:
    decider = await make_decider()
    now = clock.now()
    await bus.publish(bus.subjects.status("web"), web_status(now, 2))
    await bus.publish(bus.subjects.snapshots("web"), web_snapshot(now, {"web-0": 30.0, "web-1": 30.0}))
    await bus.publish(bus.subjects.decider_control, DeciderControl(action="pause", target="web", reason="deploy"))
    view = decider._view("web")
    await wait_for(lambda: view.snapshot is not None and "web" in decider.paused)
    paused = await decider.run_tick()
    assert paused is not None
    assert [(d.desired_replicas, d.reason) for d in paused.decisions] == [(2, "Paused")]

    await bus.publish(bus.subjects.decider_control, DeciderControl(action="resume", target="web"))
    await wait_for(lambda: "web" not in decider.paused)
    clock.advance(1)
    resumed = await decider.run_tick()
    assert resumed is not None
    assert resumed.decisions[0].desired_replicas == 6


async def test_a_restarted_decider_keeps_its_scale_events_and_recommendations(
    bus: Bus, make_decider: DeciderFactory, clock: ManualClock
) -> None:
    """Scale events live in the KV bucket: after a restart the rate limit still counts the last scale-up
    (2 -> 4 five seconds ago), so 4 may grow to 6 (Pods 4 / 15 s from 2), not to 8 as a fresh decider would."""
    first = await make_decider()
    t0 = clock.now()
    await bus.publish(bus.subjects.status("web"), web_status(t0, 2))
    await bus.publish(bus.subjects.snapshots("web"), web_snapshot(t0, {"web-0": 12.0, "web-1": 8.0}))
    view = first._view("web")
    await wait_for(lambda: view.status is not None and view.snapshot is not None)
    batch = await first.run_tick()
    assert batch is not None and batch.decisions[0].desired_replicas == 4
    await first.stop()

    clock.advance(5)
    second = await make_decider()
    restored = second._view("web").state
    assert [e.change for e in restored.hpa.scale_up_events] == [2]
    assert [r.replicas for r in restored.hpa.recommendations] == [2, 4]
    now = clock.now()
    await bus.publish(bus.subjects.status("web"), web_status(now, 4))
    await bus.publish(bus.subjects.snapshots("web"), web_snapshot(now, {f"web-{i}": 40.0 for i in range(4)}))
    view = second._view("web")
    await wait_for(lambda: view.status is not None and view.snapshot is not None)
    batch = await second.run_tick()
    assert batch is not None
    assert [(d.desired_replicas, d.reason) for d in batch.decisions] == [(6, "ScaleUpLimit")]


async def test_a_control_pause_with_replicas_holds_the_target_at_that_size(
    bus: Bus, make_decider: DeciderFactory, clock: ManualClock
) -> None:
    decider = await make_decider()
    now = clock.now()
    await bus.publish(bus.subjects.status("web"), web_status(now, 2))
    await bus.publish(
        bus.subjects.decider_control, DeciderControl(action="pause", target="web", replicas=5, reason="load test")
    )
    view = decider._view("web")
    await wait_for(lambda: view.status is not None and "web" in decider.paused)
    batch = await decider.run_tick()
    assert batch is not None
    assert [(d.desired_replicas, d.reason) for d in batch.decisions] == [(5, "Paused")]


async def test_a_control_pause_and_its_resume_survive_a_restart(
    bus: Bus, make_decider: DeciderFactory, clock: ManualClock
) -> None:
    """Control pauses are kept in the decider's KV bucket: a restarted decider still holds a paused target at
    its pausedReplicas, and a resume given before the next restart is not undone by the stored pause."""
    first = await make_decider()
    await bus.publish(
        bus.subjects.decider_control, DeciderControl(action="pause", target="web", replicas=3, reason="freeze")
    )
    await wait_for(lambda: "web" in first.paused)
    await first.stop()

    second = await make_decider()
    assert second.paused["web"].replicas == 3
    now = clock.now()
    await bus.publish(bus.subjects.status("web"), web_status(now, 2))
    await bus.publish(bus.subjects.snapshots("web"), web_snapshot(now, {"web-0": 30.0, "web-1": 30.0}))
    view = second._view("web")
    await wait_for(lambda: view.status is not None and view.snapshot is not None)
    batch = await second.run_tick()
    assert batch is not None
    assert [(d.desired_replicas, d.reason) for d in batch.decisions] == [(3, "Paused")]

    await bus.publish(bus.subjects.decider_control, DeciderControl(action="resume", target="web"))
    await wait_for(lambda: "web" not in second.paused)
    await second.stop()
    third = await make_decider()
    assert "web" not in third.paused


async def test_a_target_seen_before_its_policy_gets_its_stored_pause_when_the_policy_arrives(
    bus: Bus, make_decider: DeciderFactory, clock: ManualClock, policy_dir: Path
) -> None:
    """The stored state of a target is read when a reload adds its policy, even when its status arrived first
    (the decider already had a view of it), and the target is not evaluated before that."""
    first = await make_decider()
    await bus.publish(bus.subjects.decider_control, DeciderControl(action="pause", target="api", replicas=2))
    await wait_for(lambda: "api" in first.paused)
    await first.stop()

    second = await make_decider(reload_interval_seconds=0.05)
    assert "api" not in second.paused, "api has no policy yet: its pause is not read"
    api_status = msgspec.structs.replace(web_status(clock.now(), 1), target="api")
    await bus.publish(bus.subjects.status("api"), api_status)
    await wait_for(lambda: second._view("api").status is not None)
    (policy_dir / "api.yaml").write_text((policy_dir / "web.yaml").read_text().replace("name: web", "name: api"))
    await wait_for(lambda: "api" in second.paused)
    batch = await second.run_tick(["api"])
    assert batch is not None
    assert [(d.target, d.desired_replicas, d.reason) for d in batch.decisions] == [("api", 2, "Paused")]


async def test_engine_state_is_saved_while_statuses_of_unseen_targets_arrive(make_decider: DeciderFactory) -> None:
    """Saving awaits KV writes; a status or snapshot of a target never seen before adds a view meanwhile, and
    the save neither fails on that nor skips the targets that were due."""
    decider = await make_decider()
    decider._view("web")
    saving = asyncio.create_task(decider._persist(force=True))
    await asyncio.sleep(0)  # the save now waits for the KV
    decider._view("newcomer")
    await saving
    assert decider.store is not None
    assert list(await decider.store.load(["web"])) == ["web"]
    assert decider.metrics.state_save_failures._value.get() == 0
