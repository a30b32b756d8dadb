"""Consumer-group lag against a real single-node Kafka broker (KRaft), from Maven Central jars.

Skipped, with the reason, only when Java or the Kafka jars are not installed (`make test-deps`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from nats.aio.client import Client as NATS

from services.collector.config import KafkaSourceConfig
from services.collector.discovery import ReplicaDirectory
from services.collector.sources.base import SourceContext, SourceError
from services.collector.sources.kafka import KafkaLagSource, partition_lag
from shared.clock import ManualClock
from shared.natsserver import free_port

from .conftest import CollectorFactory, SnapshotListener, config_from
from .servers import KafkaBroker, ServerUnavailable, kafka_cluster_id, skip_unavailable

pytestmark = pytest.mark.kafka


def test_partition_lag_is_end_minus_committed_never_negative() -> None:
    assert partition_lag(committed=2, end=5, uncommitted="end") == 3
    assert partition_lag(committed=9, end=5, uncommitted="end") == 0
    assert partition_lag(committed=None, end=5, uncommitted="end") == 5
    assert partition_lag(committed=-1, end=5, uncommitted="zero") == 0


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One broker for the module (a JVM start costs seconds); each test uses its own topics and groups."""
    try:
        broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    except ServerUnavailable as exc:
        skip_unavailable(exc)
    broker.start()
    yield broker
    broker.stop()


async def seed(bootstrap: str, prefix: str) -> tuple[str, str]:
    """Topics `<prefix>-orders` (3 partitions: 5, 3, 0 messages) and `<prefix>-refunds` (1 partition, 4 messages);
    group `<prefix>-billing` has committed orders p0 at 2, p1 at 3 (none on p2) and refunds p0 at 1."""
    orders, refunds = f"{prefix}-orders", f"{prefix}-refunds"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(orders, num_partitions=3, replication_factor=1), NewTopic(refunds, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, partition, count in ((orders, 0, 5), (orders, 1, 3), (refunds, 0, 4)):
            for number in range(count):
                await producer.send_and_wait(topic, f"m{number}".encode(), partition=partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{prefix}-billing", enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(orders, 0), TopicPartition(orders, 1), TopicPartition(refunds, 0)])
        await consumer.commit(
            {TopicPartition(orders, 0): 2, TopicPartition(orders, 1): 3, TopicPartition(refunds, 0): 1}
        )
    finally:
        await consumer.stop()
    return orders, refunds


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def lag_source(http: aiohttp.ClientSession, **fields: object) -> KafkaLagSource:
    data: dict[str, object] = {"type": "kafka", "name": "lag", "timeout_seconds": 10.0}
    data.update(fields)
    context = SourceContext(
        target="billing", clock=ManualClock(), http=http, replicas=ReplicaDirectory(), nats=NATS(), config_dir=Path(".")
    )
    return KafkaLagSource(msgspec.convert(data, KafkaSourceConfig), context)


def values(samples: list) -> dict[str, float]:  # type: ignore[type-arg]
    return {s.labels.get("topic", "total"): s.value for s in samples}


async def test_lag_is_summed_over_the_groups_committed_partitions(
    kafka: KafkaBroker, http: aiohttp.ClientSession
) -> None:
    orders, refunds = await seed(kafka.bootstrap, "a")
    source = lag_source(http, bootstrap_servers=kafka.bootstrap, group="a-billing", per_topic=True)
    try:
        samples = await source.collect()
    finally:
        await source.close()
    # orders: p0 5-2=3, p1 3-3=0 (p2 has no commit and is not counted); refunds: 4-1=3
    assert values(samples) == {"total": 6.0, orders: 3.0, refunds: 3.0}
    assert all(s.name == "kafka_consumer_lag" and s.labels["group"] == "a-billing" for s in samples)


async def test_configured_topics_count_every_partition_and_uncommitted_ones_lag_by_their_end(
    kafka: KafkaBroker, http: aiohttp.ClientSession
) -> None:
    orders, refunds = await seed(kafka.bootstrap, "b")
    for uncommitted, expected in (("end", 5 + 3 + 0 + 4), ("zero", 0)):
        source = lag_source(
            http,
            bootstrap_servers=kafka.bootstrap,
            group="b-new",
            topics=[orders, refunds],
            uncommitted_lag=uncommitted,
        )
        try:
            [sample] = await source.collect()
        finally:
            await source.close()
        assert sample.value == expected, uncommitted


async def test_lag_follows_new_messages_and_commits(kafka: KafkaBroker, http: aiohttp.ClientSession) -> None:
    orders, _ = await seed(kafka.bootstrap, "c")
    source = lag_source(http, bootstrap_servers=kafka.bootstrap, group="c-billing", topics=[orders])
    try:
        assert values(await source.collect())["total"] == 3.0  # p0 3 + p1 0 + p2 0 (no commit, empty)
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            for _ in range(4):
                await producer.send_and_wait(orders, b"more", partition=2)
        finally:
            await producer.stop()
        assert values(await source.collect())["total"] == 7.0, "the same clients see the new end offsets"
    finally:
        await source.close()


async def test_a_collection_cut_off_by_the_runners_timeout_gets_fresh_clients_next_time(
    kafka: KafkaBroker, http: aiohttp.ClientSession
) -> None:
    """The runner cancels a collection at its timeout; clients cut off mid-call are not reused."""
    orders, _ = await seed(kafka.bootstrap, "f")
    source = lag_source(http, bootstrap_servers=kafka.bootstrap, group="f-billing", topics=[orders])
    try:
        assert values(await source.collect())["total"] == 3.0
        used = source._admin
        collecting = asyncio.create_task(source.collect())
        await asyncio.sleep(0)  # it runs up to its first broker call
        collecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await collecting
        assert values(await source.collect())["total"] == 3.0
        assert source._admin is not None and source._admin is not used
    finally:
        await source.close()


async def test_a_missing_topic_fails_the_source_with_the_reason(
    kafka: KafkaBroker, http: aiohttp.ClientSession
) -> None:
    source = lag_source(http, bootstrap_servers=kafka.bootstrap, group="g", topics=["no-such-topic"])
    try:
        with pytest.raises(SourceError, match="'no-such-topic' not found"):
            await source.collect()
    finally:
        await source.close()


async def test_a_group_with_no_committed_offsets_is_an_error_not_zero_lag(
    kafka: KafkaBroker, http: aiohttp.ClientSession
) -> None:
    """Without configured topics, no committed offset means the lag is unknown (new or misspelt group, or a
    coordinator still loading after a restart); reporting 0 could scale a busy consumer down."""
    await seed(kafka.bootstrap, "nc")  # another group commits, so the broker's group coordinator is up
    source = lag_source(http, bootstrap_servers=kafka.bootstrap, group="a-group-that-never-committed")
    try:
        with pytest.raises(SourceError, match="no committed offsets"):
            await source.collect()
    finally:
        await source.close()


async def test_an_unreachable_broker_fails_within_the_timeout(http: aiohttp.ClientSession) -> None:
    """Bounded: the source gives up with a SourceError (a hang would end in TimeoutError instead)."""
    source = lag_source(http, bootstrap_servers=f"127.0.0.1:{free_port()}", group="g", timeout_seconds=2.0)
    try:
        with pytest.raises(SourceError, match="kafka"):
            await asyncio.wait_for(source.collect(), timeout=30.0)
    finally:
        await source.close()


async def test_lag_reaches_the_targets_snapshots(
    kafka: KafkaBroker, snapshots: SnapshotListener, collector_factory: CollectorFactory
) -> None:
    await seed(kafka.bootstrap, "d")
    source = {
        "type": "kafka",
        "name": "lag",
        "bootstrap_servers": kafka.bootstrap,
        "group": "d-billing",
        "interval_seconds": 0.5,
        "timeout_seconds": 5.0,
    }
    await collector_factory(
        config_from({"snapshot_interval_seconds": 0.3, "targets": [{"name": "billing", "sources": [source]}]})
    )
    snapshot = await snapshots.wait_for(
        lambda s: any(x.name == "kafka_consumer_lag" and x.quality == "ok" for x in s.samples), within=20.0
    )
    assert [(s.value, s.labels) for s in snapshot.samples] == [(6.0, {"group": "d-billing"})]


async def test_a_broker_outage_is_an_error_and_the_source_recovers_when_it_returns(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Its own broker (this test stops it): lag, then a bounded failure, then lag again with fresh clients."""
    try:
        broker = KafkaBroker(tmp_path / "kafka")
    except ServerUnavailable as exc:
        skip_unavailable(exc)
    await asyncio.to_thread(broker.start)
    try:
        await seed(broker.bootstrap, "e")
        source = lag_source(http, bootstrap_servers=broker.bootstrap, group="e-billing", timeout_seconds=3.0)
        try:
            assert values(await source.collect())["total"] == 6.0
            await asyncio.to_thread(broker.stop)
            with pytest.raises(SourceError, match="kafka"):
                await asyncio.wait_for(source.collect(), timeout=30.0)
            await asyncio.to_thread(broker.restart)
            last_error = ""
            for _ in range(20):  # bounded: the restarted broker takes a moment to serve metadata
                try:
                    recovered = await asyncio.wait_for(source.collect(), timeout=30.0)
                    break
                except SourceError as exc:
                    last_error = str(exc)
                    await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"the source did not recover after the broker came back: {last_error}")
            assert values(recovered)["total"] == 6.0, (recovered, last_error)
        finally:
            await source.close()
    finally:
        await asyncio.to_thread(broker.stop)


def test_generated_kafka_cluster_ids_never_look_like_an_option() -> None:
    """1 random id in 64 would start with '-' and break `StorageTool format -t <id>`; 2,000 draws make a miss
    practically certain to show."""
    ids = [kafka_cluster_id() for _ in range(2000)]
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
    assert all(len(cluster_id) == 22 for cluster_id in ids)
