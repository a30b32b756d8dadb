"""The bus against a real nats-server: bad input is dead-lettered with its reason and nothing is lost."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
from nats.aio.msg import Msg

from shared.bus import Bus, BusConnectError
from shared.codec import MessageDecoder, encode
from shared.config import BusConfig
from shared.errors import PermanentError, RetryableError
from shared.natsserver import free_port
from shared.schemas import DeadLetter, DecisionBatch, MetricPush


async def next_message(queue: asyncio.Queue[Msg]) -> Msg:
    return await asyncio.wait_for(queue.get(), 5.0)


async def collect(bus: Bus, subject: str) -> asyncio.Queue[Msg]:
    queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def put(msg: Msg) -> None:
        await queue.put(msg)

    await bus.nc.subscribe(subject, cb=put)
    await bus.nc.flush()
    return queue


async def test_a_valid_message_reaches_the_handler_decoded(bus: Bus) -> None:
    received: asyncio.Queue[MetricPush] = asyncio.Queue()

    async def handler(message: MetricPush, _: Msg) -> None:
        await received.put(message)

    await bus.subscribe(bus.subjects.metrics_all, MessageDecoder(MetricPush), handler)
    sent = MetricPush(target="web", name="queue_depth", value=7.0)
    await bus.publish(bus.subjects.metrics("web"), sent)
    assert await asyncio.wait_for(received.get(), 5) == sent


async def test_a_malformed_message_goes_to_the_dead_letter_subject_with_its_reason(bus: Bus) -> None:
    letters = await collect(bus, bus.subjects.dead_letter_all)
    calls: list[MetricPush] = []

    async def handler(message: MetricPush, _: Msg) -> None:
        calls.append(message)

    await bus.subscribe(bus.subjects.metrics_all, MessageDecoder(MetricPush), handler)
    await bus.nc.publish(bus.subjects.metrics("web"), b'{"kind":"metric_push","target":"web","name":"q"}')
    letter = MessageDecoder(DeadLetter).decode((await next_message(letters)).data)
    assert letter.service == "test"
    assert letter.subject == "scalebus.metrics.web"
    assert "value" in letter.reason
    assert letter.payload == '{"kind":"metric_push","target":"web","name":"q"}'
    assert calls == []

    # the subscription keeps working after bad input
    await bus.publish(bus.subjects.metrics("web"), MetricPush(target="web", name="q", value=1.0))
    await bus.nc.flush()
    for _ in range(50):
        if calls:
            break
        await asyncio.sleep(0.02)
    assert [c.value for c in calls] == [1.0]


async def test_binary_garbage_is_kept_whole_as_base64(bus: Bus) -> None:
    letters = await collect(bus, bus.subjects.dead_letter_all)

    async def handler(message: MetricPush, _: Msg) -> None:  # pragma: no cover - never called
        raise AssertionError(message)

    await bus.subscribe(bus.subjects.metrics_all, MessageDecoder(MetricPush), handler)
    garbage = bytes([0xFF, 0xFE, 0x00, 0x01])
    await bus.nc.publish(bus.subjects.metrics("web"), garbage)
    letter = MessageDecoder(DeadLetter).decode((await next_message(letters)).data)
    assert letter.payload_encoding == "base64"
    assert base64.b64decode(letter.payload) == garbage


async def test_dead_letters_are_stored_in_jetstream(bus: Bus) -> None:
    await bus.dead_letter("scalebus.metrics.web", b"oops", "a reason")
    info = await bus.js.stream_info(bus.subjects.stream_name("deadletter"))
    for _ in range(50):
        info = await bus.js.stream_info(bus.subjects.stream_name("deadletter"))
        if info.state.messages:
            break
        await asyncio.sleep(0.02)
    assert info.state.messages == 1


async def test_a_handler_rejecting_a_message_permanently_dead_letters_it(bus: Bus) -> None:
    letters = await collect(bus, bus.subjects.dead_letter_all)

    async def handler(message: MetricPush, _: Msg) -> None:
        raise PermanentError(f"no such target {message.target}")

    await bus.subscribe(bus.subjects.metrics_all, MessageDecoder(MetricPush), handler)
    await bus.publish(bus.subjects.metrics("ghost"), MetricPush(target="ghost", name="q", value=1.0))
    letter = MessageDecoder(DeadLetter).decode((await next_message(letters)).data)
    assert letter.reason == "no such target ghost"


def batch(batch_id: str) -> DecisionBatch:
    return DecisionBatch(batch_id=batch_id, decider="d", tick=1, decided_at=time.time())


async def test_a_pull_consumer_acks_handled_messages_and_terms_malformed_ones(bus: Bus) -> None:
    letters = await collect(bus, bus.subjects.dead_letter_all)
    handled: list[str] = []
    stop = asyncio.Event()

    async def handler(message: DecisionBatch, _: Msg) -> None:
        handled.append(message.batch_id)
        if len(handled) == 2:
            stop.set()

    await bus.publish_persistent(bus.subjects.decisions, batch("b1"))
    await bus.js.publish(bus.subjects.decisions, b"not a batch")
    await bus.publish_persistent(bus.subjects.decisions, batch("b2"))
    stream = bus.subjects.stream_name("decisions")
    await asyncio.wait_for(
        bus.consume(bus.subjects.decisions, "t", MessageDecoder(DecisionBatch), handler, stream=stream, stop=stop),
        timeout=10,
    )
    assert handled == ["b1", "b2"]
    letter = MessageDecoder(DeadLetter).decode((await next_message(letters)).data)
    assert letter.payload == "not a batch"
    info = await bus.js.consumer_info(stream, "t")
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_a_retryable_failure_is_delivered_again(bus: Bus) -> None:
    attempts: list[str] = []
    stop = asyncio.Event()

    async def handler(message: DecisionBatch, _: Msg) -> None:
        attempts.append(message.batch_id)
        if len(attempts) == 1:
            raise RetryableError("lease held elsewhere", delay=0.1)
        stop.set()

    await bus.publish_persistent(bus.subjects.decisions, batch("b1"))
    stream = bus.subjects.stream_name("decisions")
    await asyncio.wait_for(
        bus.consume(bus.subjects.decisions, "r", MessageDecoder(DecisionBatch), handler, stream=stream, stop=stop),
        timeout=10,
    )
    assert attempts == ["b1", "b1"]


async def test_the_same_message_id_is_stored_once(bus: Bus) -> None:
    for _ in range(3):
        await bus.publish_persistent(bus.subjects.decisions, batch("same"), msg_id="same")
    info = await bus.js.stream_info(bus.subjects.stream_name("decisions"))
    assert info.state.messages == 1


async def test_connecting_to_nothing_fails_within_its_bound() -> None:
    config = BusConfig(url=f"nats://127.0.0.1:{free_port()}", connect_timeout_seconds=0.5, connect_attempts=2)
    with pytest.raises(BusConnectError, match="cannot reach NATS"):
        await asyncio.wait_for(Bus.connect(config, service="t", instance="t"), timeout=10)


async def test_closing_with_a_pull_subscription_open_does_not_hang(bus_config: BusConfig) -> None:
    bus = await Bus.connect(bus_config, service="t", instance="t")
    await bus.ensure_core_streams()
    stop = asyncio.Event()

    async def handler(message: DecisionBatch, _: Msg) -> None:  # pragma: no cover - nothing is published
        raise AssertionError(message)

    stream = bus.subjects.stream_name("decisions")
    consumer = asyncio.create_task(
        bus.consume(bus.subjects.decisions, "idle", MessageDecoder(DecisionBatch), handler, stream=stream, stop=stop)
    )
    await asyncio.sleep(0.7)  # let at least one fetch time out, the case that makes drain() hang
    stop.set()
    await asyncio.wait_for(consumer, timeout=5)
    await asyncio.wait_for(bus.close(), timeout=5)
    assert bus.nc.is_closed


async def test_published_messages_are_plain_json_any_client_can_read(bus: Bus) -> None:
    inbox = await collect(bus, bus.subjects.metrics("web"))
    await bus.publish(bus.subjects.metrics("web"), MetricPush(target="web", name="q", value=2.5))
    assert (await next_message(inbox)).data == encode(MetricPush(target="web", name="q", value=2.5))


async def test_messages_waiting_in_a_fetched_batch_are_not_handed_to_another_instance_meanwhile(
    bus: Bus, bus_config: BusConfig
) -> None:
    """Two instances share one durable consumer (as two actuators do). The first fetched a batch whose handling
    takes longer than ack_wait in total; the second must not receive the messages still waiting in that batch."""
    stream = bus.subjects.stream_name("decisions")
    first_handled: list[str] = []
    second_handled: list[str] = []
    stop = asyncio.Event()
    first_done_one = asyncio.Event()

    async def slow_handler(message: DecisionBatch, _: Msg) -> None:
        await asyncio.sleep(0.8)
        first_handled.append(message.batch_id)
        first_done_one.set()
        if len(first_handled) == 4:
            stop.set()

    async def other_handler(message: DecisionBatch, _: Msg) -> None:
        second_handled.append(message.batch_id)

    for index in range(4):
        await bus.publish_persistent(bus.subjects.decisions, batch(f"b{index}"))
    decoder = MessageDecoder(DecisionBatch)
    subject = bus.subjects.decisions
    first = asyncio.create_task(
        bus.consume(subject, "shared", decoder, slow_handler, stream=stream, stop=stop, batch=4, ack_wait=1.5)
    )
    await asyncio.wait_for(first_done_one.wait(), timeout=10)
    other_bus = await Bus.connect(bus_config, service="test", instance="second")
    second = asyncio.create_task(
        other_bus.consume(subject, "shared", decoder, other_handler, stream=stream, stop=stop, batch=4, ack_wait=1.5)
    )
    await asyncio.wait_for(first, timeout=20)
    await asyncio.wait_for(second, timeout=5)
    await other_bus.close()
    assert first_handled == ["b0", "b1", "b2", "b3"]
    assert second_handled == []
