"""The application helpers: pushing custom metrics and following decisions, on a real nats-server."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from shared.bus import Bus
from shared.metrics_client import publish_metric, publish_metrics, subscribe_decisions, subscribe_results
from shared.schemas import Decision, DecisionBatch, ExecutionResult, MetricPush


async def received_on(bus: Bus, subject: str) -> asyncio.Queue[bytes]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(msg: object) -> None:
        queue.put_nowait(msg.data)  # type: ignore[attr-defined]

    await bus.nc.subscribe(subject, cb=on_message)
    await bus.nc.flush()
    return queue


async def test_publish_metric_sends_the_documented_json_on_the_targets_metrics_subject(bus: Bus) -> None:
    queue = await received_on(bus, "scalebus.metrics.orders")
    await publish_metric(bus.nc, "orders", "queue_depth", 42, labels={"queue": "in"}, unit="messages", timestamp=5.0)
    raw = await asyncio.wait_for(queue.get(), 5.0)
    assert msgspec.json.decode(raw) == {
        "kind": "metric_push",
        "version": 1,
        "target": "orders",
        "name": "queue_depth",
        "value": 42.0,
        "timestamp": 5.0,
        "unit": "messages",
        "labels": {"queue": "in"},
    }


async def test_publish_metric_stamps_the_current_time_by_default(bus: Bus) -> None:
    queue = await received_on(bus, "scalebus.metrics.orders")
    await publish_metric(bus.nc, "orders", "queue_depth", 1)
    push = msgspec.json.decode(await asyncio.wait_for(queue.get(), 5.0), type=MetricPush)
    assert push.timestamp > 1_600_000_000


@pytest.mark.parametrize(("target", "name"), [("Orders", "queue_depth"), ("orders", "queue depth")])
async def test_publish_metric_refuses_what_the_collector_would_dead_letter(bus: Bus, target: str, name: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        await publish_metric(bus.nc, target, name, 1)


async def test_publish_metrics_sends_many_samples_as_one_json_array(bus: Bus) -> None:
    queue = await received_on(bus, "scalebus.metrics.orders")
    pushes = [MetricPush(target="orders", name="lag", value=v, labels={"p": str(v)}) for v in range(3)]
    await publish_metrics(bus.nc, "orders", pushes)
    batch = msgspec.json.decode(await asyncio.wait_for(queue.get(), 5.0), type=list[MetricPush])
    assert batch == pushes
    with pytest.raises(ValueError, match="in a batch for 'orders'"):
        await publish_metrics(bus.nc, "orders", [MetricPush(target="billing", name="lag", value=1)])


def decision(target: str, desired: int) -> Decision:
    return Decision(
        id=f"d-{target}-{desired}",
        target=target,
        current_replicas=1,
        desired_replicas=desired,
        reason="ScaleUp",
        decided_at=1.0,
    )


async def test_subscribe_decisions_delivers_each_decision_of_the_wanted_target(bus: Bus) -> None:
    seen: asyncio.Queue[Decision] = asyncio.Queue()

    async def on_decision(item: Decision) -> None:
        seen.put_nowait(item)

    await subscribe_decisions(bus.nc, on_decision, target="orders")
    await bus.nc.flush()
    batch = DecisionBatch(
        batch_id="b1", decider="d", tick=1, decided_at=1.0, decisions=(decision("web", 3), decision("orders", 4))
    )
    await bus.nc.publish(bus.subjects.decisions, b"garbage")  # skipped, the subscription keeps working
    await bus.publish_persistent(bus.subjects.decisions, batch, msg_id="b1")
    got = await asyncio.wait_for(seen.get(), 5.0)
    assert (got.target, got.desired_replicas) == ("orders", 4)
    await asyncio.sleep(0.1)
    assert seen.empty(), "decisions of other targets are filtered out"


async def test_subscribe_results_delivers_the_targets_execution_results(bus: Bus) -> None:
    seen: asyncio.Queue[ExecutionResult] = asyncio.Queue()

    async def on_result(item: ExecutionResult) -> None:
        seen.put_nowait(item)

    await subscribe_results(bus.nc, on_result, target="orders")
    await bus.nc.flush()
    result = ExecutionResult(decision_id="d1", target="orders", status="applied", executed_at=2.0)
    await bus.publish_persistent(bus.subjects.results("orders"), result)
    assert await asyncio.wait_for(seen.get(), 5.0) == result
