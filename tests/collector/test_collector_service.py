"""The collector service end to end on a real nats-server with real HTTP exporters.

TargetStatus in -> replicas scraped -> one MetricSnapshot per target per interval; pushed
metrics in -> snapshots; malformed pushes -> dead letters; slow sources -> errors, not delays.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable

import msgspec
import nats

from shared.bus import Bus
from shared.config import BusConfig
from shared.natsserver import free_port
from shared.schemas import DeadLetter, MetricSnapshot

from .conftest import CollectorFactory, Exporter, SnapshotListener, config_from, web_status

ExporterFactory = Callable[[], Awaitable[Exporter]]


DEMO_SCRAPE = {
    "type": "scrape",
    "name": "replicas",
    "discover": True,
    "interval_seconds": 0.2,
    "timeout_seconds": 0.5,
    "metrics": [{"match": "demo_requests_total", "as": "demo_requests_per_second", "kind": "rate"}],
}


def pods(snapshot: MetricSnapshot, name: str) -> dict[str, float]:
    return {s.labels["pod"]: s.value for s in snapshot.samples if s.name == name and s.quality == "ok"}


async def test_replicas_discovered_from_status_are_scraped_into_per_pod_rate_snapshots(
    bus: Bus, snapshots: SnapshotListener, collector_factory: CollectorFactory, exporter_factory: ExporterFactory
) -> None:
    """The demo loop's path: TargetStatus names the replicas; snapshots carry each one's request rate."""
    one, two = await exporter_factory(), await exporter_factory()
    await collector_factory(
        config_from({"snapshot_interval_seconds": 0.2, "targets": [{"name": "web", "sources": [DEMO_SCRAPE]}]})
    )
    await bus.publish(bus.subjects.status("web"), web_status(("web-1", one.url), ("web-2", two.url)))

    async def serve_load() -> None:
        for _ in range(40):  # bounded: 40 ticks of 50 ms
            one.requests_total += 5
            two.requests_total += 1
            await asyncio.sleep(0.05)

    load = asyncio.create_task(serve_load())
    snapshot = await snapshots.wait_for(lambda s: set(pods(s, "demo_requests_per_second")) == {"web-1", "web-2"})
    await load
    rates = pods(snapshot, "demo_requests_per_second")
    assert rates["web-1"] > rates["web-2"] > 0
    assert snapshot.target == "web" and snapshot.collector == "collector-test" and not snapshot.urgent


async def test_one_snapshot_per_target_per_interval(
    snapshots: SnapshotListener, collector_factory: CollectorFactory
) -> None:
    """Every interval tick publishes exactly one snapshot of each target: same count, consecutive sequences."""
    collector = await collector_factory(
        config_from(
            {
                "snapshot_interval_seconds": 0.25,
                "push": {"flush_seconds": None},
                "targets": [{"name": "web"}, {"name": "api"}],
            }
        )
    )
    await snapshots.wait_for(lambda s: s.target == "api" and s.sequence >= 4, within=10.0)
    await collector.stop()
    await asyncio.sleep(0.3)  # let the last published snapshots arrive
    per_target = {t: [s for s in snapshots.snapshots if s.target == t] for t in ("web", "api")}
    assert len(per_target["web"]) == len(per_target["api"]) >= 4
    for published in per_target.values():
        assert [s.sequence for s in published] == list(range(1, len(published) + 1))
        gaps = [later.collected_at - earlier.collected_at for earlier, later in itertools.pairwise(published)]
        assert min(gaps) > 0.1, "never two snapshots of a target within one interval"
    assert collector.metrics.snapshots.labels("interval")._value.get() == 2 * len(per_target["web"])


async def test_a_raw_nats_client_publishing_the_documented_json_produces_a_snapshot(
    bus_config: BusConfig, snapshots: SnapshotListener, collector_factory: CollectorFactory
) -> None:
    """Any language's NATS client can push: plain JSON on `scalebus.metrics.<target>` (docs/metrics-push.md)."""
    await collector_factory(config_from({"snapshot_interval_seconds": 5.0}))
    client = await nats.connect(bus_config.url)
    try:
        payload = {
            "kind": "metric_push",
            "target": "orders",
            "name": "queue_depth",
            "value": 42,
            "labels": {"queue": "in"},
        }
        await client.publish("scalebus.metrics.orders", json.dumps(payload).encode())
        await client.flush()
    finally:
        await client.close()
    snapshot = await snapshots.wait_for(lambda s: s.target == "orders", within=3.0)
    [sample] = snapshot.samples
    assert (sample.name, sample.value, sample.labels, sample.source, sample.quality) == (
        "queue_depth",
        42.0,
        {"queue": "in"},
        "push",
        "ok",
    )


async def test_a_json_array_of_pushes_is_ingested_as_one_message(
    bus_config: BusConfig, snapshots: SnapshotListener, collector_factory: CollectorFactory
) -> None:
    await collector_factory(config_from({}))
    client = await nats.connect(bus_config.url)
    try:
        batch = [{"target": "orders", "name": "queue_depth", "value": v, "labels": {"shard": str(v)}} for v in range(3)]
        await client.publish("scalebus.metrics.orders", json.dumps(batch).encode())
        await client.flush()
    finally:
        await client.close()
    snapshot = await snapshots.wait_for(lambda s: s.target == "orders" and len(s.samples) == 3, within=3.0)
    assert sorted(s.value for s in snapshot.samples) == [0.0, 1.0, 2.0]


async def dead_letters(bus: Bus) -> asyncio.Queue[DeadLetter]:
    queue: asyncio.Queue[DeadLetter] = asyncio.Queue()
    decoder = msgspec.json.Decoder(DeadLetter)

    async def on_message(msg: object) -> None:
        queue.put_nowait(decoder.decode(msg.data))  # type: ignore[attr-defined]

    await bus.nc.subscribe(bus.subjects.dead_letter("collector"), cb=on_message)
    await bus.nc.flush()
    return queue


async def test_a_malformed_push_lands_on_the_dead_letter_subject_with_the_reason(
    bus: Bus, snapshots: SnapshotListener, collector_factory: CollectorFactory
) -> None:
    letters = await dead_letters(bus)
    collector = await collector_factory(config_from({}))
    await bus.nc.publish("scalebus.metrics.orders", b'{"target": "orders", "name": "queue_depth", "value": "lots"}')
    await bus.nc.publish("scalebus.metrics.orders", b"not json at all")
    await bus.nc.publish("scalebus.metrics.orders", b'{"target": "payments", "name": "q", "value": 1}')
    reasons = [(await asyncio.wait_for(letters.get(), 5.0)) for _ in range(3)]
    assert "Expected `float`, got `str`" in reasons[0].reason and "value" in reasons[0].reason
    assert reasons[0].payload.startswith('{"target": "orders"')
    assert "not valid JSON" in reasons[1].reason
    assert "does not match the subject's target 'orders'" in reasons[2].reason
    assert all(letter.subject == "scalebus.metrics.orders" for letter in reasons)
    assert "orders" not in collector.states  # nothing was ingested, and the collector kept running
    await bus.nc.publish("scalebus.metrics.orders", b'{"target": "orders", "name": "queue_depth", "value": 1}')
    await snapshots.wait_for(lambda s: s.target == "orders", within=3.0)


async def test_pushes_for_unconfigured_targets_are_dead_lettered_when_not_accepted(
    bus: Bus, collector_factory: CollectorFactory
) -> None:
    letters = await dead_letters(bus)
    await collector_factory(config_from({"push": {"accept_unconfigured_targets": False}, "targets": [{"name": "web"}]}))
    await bus.nc.publish("scalebus.metrics.orders", b'{"target": "orders", "name": "q", "value": 1}')
    letter = await asyncio.wait_for(letters.get(), 5.0)
    assert "unknown target 'orders'" in letter.reason


async def test_a_slow_source_is_reported_as_timed_out_without_delaying_the_others(
    bus: Bus, snapshots: SnapshotListener, collector_factory: CollectorFactory, exporter_factory: ExporterFactory
) -> None:
    """A source whose endpoint hangs yields error samples; the fast source keeps its 0.2 s rhythm."""
    fast, slow = await exporter_factory(), await exporter_factory()
    slow.delay_seconds = 30.0
    fast.inflight = 2
    config = config_from(
        {
            "snapshot_interval_seconds": 0.2,
            "targets": [
                {
                    "name": "web",
                    "sources": [
                        {
                            "type": "scrape",
                            "name": "fast",
                            "interval_seconds": 0.2,
                            "endpoints": [{"url": fast.url + "/metrics", "pod": "fast-1"}],
                            "metrics": [{"match": "demo_inflight_requests", "as": "fast_inflight"}],
                        },
                        {
                            "type": "scrape",
                            "name": "slow",
                            "interval_seconds": 0.2,
                            "timeout_seconds": 0.6,
                            "request_timeout_seconds": 20.0,
                            "retry": {"attempts": 2, "backoff_seconds": 0.05},
                            "endpoints": [{"url": slow.url + "/metrics", "pod": "slow-1"}],
                            "metrics": [{"match": "demo_inflight_requests", "as": "slow_inflight"}],
                        },
                    ],
                }
            ],
        }
    )
    collector = await collector_factory(config)

    def slow_failed(snapshot: MetricSnapshot) -> bool:
        return any(s.name == "slow_inflight" and s.quality == "error" for s in snapshot.samples)

    started = len(snapshots.snapshots)
    failed = await snapshots.wait_for(slow_failed, within=5.0)
    [slow_sample] = [s for s in failed.samples if s.name == "slow_inflight"]
    assert slow_sample.error == "timed out after 0.6s" and slow_sample.source == "slow"
    # While the slow source spent 2 x 0.6 s failing, the fast one kept being collected:
    # its samples in those snapshots come from several distinct collections.
    fast_collections = {
        s.timestamp
        for snapshot in snapshots.snapshots[started:]
        for s in snapshot.samples
        if s.name == "fast_inflight" and s.quality == "ok"
    }
    assert len(fast_collections) >= 3
    errors = collector.metrics.source_errors.labels("web", "slow", "collection")._value.get()
    assert errors >= 1


async def test_a_sample_crossing_a_threshold_is_forwarded_at_once_as_urgent(
    bus: Bus, snapshots: SnapshotListener, collector_factory: CollectorFactory, exporter_factory: ExporterFactory
) -> None:
    exporter = await exporter_factory()
    config = config_from(
        {
            "snapshot_interval_seconds": 30.0,
            "targets": [
                {
                    "name": "web",
                    "sources": [
                        {
                            "type": "scrape",
                            "name": "replicas",
                            "interval_seconds": 0.1,
                            "endpoints": [{"url": exporter.url + "/metrics", "pod": "web-1"}],
                            "metrics": [{"match": "demo_inflight_requests"}],
                        }
                    ],
                    "thresholds": [{"metric": "demo_inflight_requests", "above": 10}],
                }
            ],
        }
    )
    await collector_factory(config)
    await asyncio.sleep(0.3)
    exporter.inflight = 50
    urgent = await snapshots.wait_for(lambda s: s.urgent, within=3.0)
    assert pods(urgent, "demo_inflight_requests") == {"web-1": 50.0}
    # The interval is 30 s: the only snapshot so far is the urgent one (plus none from the interval).
    assert [s.urgent for s in snapshots.snapshots] == [True]


async def test_a_bad_status_message_is_dead_lettered_and_discovery_keeps_working(
    bus: Bus, collector_factory: CollectorFactory
) -> None:
    letters = await dead_letters(bus)
    collector = await collector_factory(config_from({"targets": [{"name": "web", "sources": [DEMO_SCRAPE]}]}))
    await bus.nc.publish(bus.subjects.status("web"), b'{"kind": "target_status", "target": "web"}')
    letter = await asyncio.wait_for(letters.get(), 5.0)
    assert "TargetStatus" in letter.reason
    await bus.publish(bus.subjects.status("web"), web_status(("web-1", f"http://127.0.0.1:{free_port()}")))
    for _ in range(50):  # bounded wait for the message to arrive
        if collector.replicas.replicas("web"):
            break
        await asyncio.sleep(0.05)
    assert [r.name for r in collector.replicas.replicas("web")] == ["web-1"]


async def test_the_collector_keeps_working_across_a_nats_server_restart(
    bus: Bus,
    nats_server: object,
    snapshots: SnapshotListener,
    collector_factory: CollectorFactory,
    exporter_factory: ExporterFactory,
) -> None:
    """Sources keep running while NATS is away; snapshots resume once it is back (nats-py reconnects)."""
    exporter = await exporter_factory()
    exporter.inflight = 4
    scrape = {
        "type": "scrape",
        "name": "replicas",
        "interval_seconds": 0.2,
        "endpoints": [{"url": exporter.url + "/metrics", "pod": "web-1"}],
        "metrics": [{"match": "demo_inflight_requests"}],
    }
    await collector_factory(
        config_from({"snapshot_interval_seconds": 0.2, "targets": [{"name": "web", "sources": [scrape]}]})
    )
    await snapshots.wait_for(lambda s: pods(s, "demo_inflight_requests") == {"web-1": 4.0}, within=5.0)
    await nats_server.restart()  # type: ignore[attr-defined]
    exporter.inflight = 9
    after = await snapshots.wait_for(lambda s: pods(s, "demo_inflight_requests") == {"web-1": 9.0}, within=15.0)
    assert after.target == "web"


FLOOD = """
import asyncio, sys
import nats

async def flood(url: str) -> None:
    client = await nats.connect(url, pending_size=256 * 1024 * 1024)
    payload = ('{"target": "flood", "name": "q", "value": 1, "labels": {"pad": "%s"}}' % ("x" * 500_000)).encode()
    for _ in range(200):  # 100 MB: more than nats-server's 64 MB max_pending of a consumer
        await client.publish("scalebus.metrics.flood", payload)
    await client.flush(timeout=20)
    await client.close()

asyncio.run(flood(sys.argv[1]))
"""


async def test_a_push_flood_that_gets_the_push_connection_cut_off_spares_the_main_connection(
    bus: Bus, bus_config: BusConfig, snapshots: SnapshotListener, collector_factory: CollectorFactory
) -> None:
    """nats-server disconnects a consumer that falls more than 64 MB behind. Pushes have a connection of their
    own, so a flood costs only that one (it reconnects), never the statuses, snapshots and heartbeats."""
    collector = await collector_factory(config_from({"snapshot_interval_seconds": 0.2, "targets": [{"name": "web"}]}))
    await snapshots.wait_for(lambda s: s.target == "web", within=5.0)
    main_nc, push_nc = collector._bus.nc, collector._push_bus.nc  # type: ignore[union-attr]
    assert push_nc is not main_nc
    # The collector's event loop stands still (as if busy) while another process floods the push subject.
    subprocess.run([sys.executable, "-c", FLOOD, bus_config.url], check=True, timeout=60)  # noqa: ASYNC221 (on purpose)
    for _ in range(100):  # bounded: at most ~10 s for the push connection to be cut off and come back
        if push_nc.stats["reconnects"] >= 1 and push_nc.is_connected:
            break
        await asyncio.sleep(0.1)
    assert push_nc.stats["reconnects"] >= 1, "the flood got the push connection cut off"
    assert main_nc.stats["reconnects"] == 0 and main_nc.is_connected
    last_web = max(s.sequence for s in snapshots.snapshots if s.target == "web")
    await snapshots.wait_for(lambda s: s.target == "web" and s.sequence > last_web, within=5.0)
    await bus.nc.publish("scalebus.metrics.orders", b'{"target": "orders", "name": "queue_depth", "value": 3}')
    await snapshots.wait_for(lambda s: s.target == "orders", within=5.0)  # and pushes are ingested again
