"""JetStream consumer backlog (num_pending + num_ack_pending) against a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from nats.js.api import ConsumerConfig, StreamConfig
from prometheus_client import CollectorRegistry

from services.collector.config import JetStreamSourceConfig
from services.collector.discovery import ReplicaDirectory
from services.collector.metrics import CollectorMetrics
from services.collector.runner import SourceRunner
from services.collector.sources.base import SourceContext, SourceError
from services.collector.sources.jetstream import JetStreamSource
from shared.bus import Bus
from shared.clock import ManualClock
from shared.config import BusConfig


@pytest.fixture
async def orders_stream(bus: Bus) -> AsyncIterator[None]:
    """Stream ORDERS with a durable pull consumer `workers` and 5 messages in it."""
    await bus.js.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
    await bus.js.add_consumer("ORDERS", ConsumerConfig(durable_name="workers", ack_wait=30))
    for number in range(5):
        await bus.js.publish("orders.new", str(number).encode())
    yield


def make_source(bus: Bus, http: aiohttp.ClientSession, **overrides: object) -> JetStreamSource:
    data: dict[str, object] = {"type": "jetstream", "name": "backlog", "stream": "ORDERS", "consumer": "workers"}
    data.update(overrides)
    config = msgspec.convert(data, JetStreamSourceConfig)
    context = SourceContext(
        target="workers", clock=ManualClock(), http=http, replicas=ReplicaDirectory(), nats=bus.nc, config_dir=Path(".")
    )
    return JetStreamSource(config, context)


async def test_backlog_counts_undelivered_and_unacknowledged_messages(bus: Bus, orders_stream: None) -> None:
    async with aiohttp.ClientSession() as http:
        source = make_source(bus, http)
        [before] = await source.collect()
        assert (before.name, before.value, before.labels) == (
            "jetstream_consumer_backlog",
            5.0,
            {"stream": "ORDERS", "consumer": "workers"},
        )
        subscription = await bus.js.pull_subscribe("orders.>", durable="workers", stream="ORDERS")
        delivered = await subscription.fetch(2, timeout=2)
        [in_flight] = await source.collect()
        assert in_flight.value == 5.0, "3 pending + 2 delivered but not acknowledged"
        for msg in delivered:
            await msg.ack_sync()
        [after] = await source.collect()
        assert after.value == 3.0


async def test_a_separate_nats_url_gets_its_own_connection(
    bus: Bus, bus_config: BusConfig, orders_stream: None
) -> None:
    async with aiohttp.ClientSession() as http:
        source = make_source(bus, http, url=bus_config.url, **{"as": "orders_backlog"})
        try:
            [sample] = await source.collect()
            own = source._own
            assert own is not None and own is not bus.nc and own.is_connected
        finally:
            await source.close()
    assert (sample.name, sample.value) == ("orders_backlog", 5.0)
    assert own.is_closed, "close() closes the source's own connection"


async def test_a_missing_consumer_fails_the_source_and_becomes_an_error_sample(bus: Bus, orders_stream: None) -> None:
    async with aiohttp.ClientSession() as http:
        source = make_source(bus, http, consumer="nobody")
        with pytest.raises(SourceError, match="'nobody'"):
            await source.collect()
        config = msgspec.convert(
            {"type": "jetstream", "name": "backlog", "stream": "ORDERS", "consumer": "nobody"}, JetStreamSourceConfig
        )
        metrics = CollectorMetrics(CollectorRegistry())
        runner = SourceRunner(
            target="workers", source=source, config=config, sink=lambda *_: None, clock=ManualClock(), metrics=metrics
        )
        [sample] = await runner.collect_once()
    assert sample.quality == "error" and "not found" in sample.error
    assert metrics.source_errors.labels("workers", "backlog", "collection")._value.get() == 1
