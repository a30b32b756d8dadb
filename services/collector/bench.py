"""Benchmark of pushed-metric ingestion (``make bench``): throughput and push-to-snapshot latency.

A real nats-server and one in-process collector; pushes come from a separate OS process (so
the publisher does not share the collector's CPU time), as single-sample messages and as JSON
arrays.  Latency: pushes stamped with their send time, measured when the snapshot carrying them
arrives.  Bounded: fixed sample counts, every phase under a time limit; prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
from collections.abc import Awaitable
from pathlib import Path

import msgspec
import nats
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from services.collector.config import CollectorConfig, OwnershipConfig, PushConfig
from services.collector.service import Collector
from shared.bus import Bus
from shared.clock import SystemClock
from shared.config import BusConfig
from shared.natsserver import NatsServer
from shared.schemas import MetricSnapshot

THROUGHPUT_GOAL = 100_000.0
LATENCY_GOAL_MS = 50.0
TARGETS = 10
PHASE_LIMIT_SECONDS = 20.0
REPO = Path(__file__).resolve().parents[2]


def encode_pushes(samples: int, batch: int, prefix: str) -> list[tuple[str, bytes]]:
    """(subject, payload) of ``samples`` pushes over TARGETS targets, ``batch`` per message."""
    messages: list[tuple[str, bytes]] = []
    sent = 0
    while sent < samples:
        target = f"bench-{(sent // batch) % TARGETS}"
        count = min(batch, samples - sent)
        items = [
            {"target": target, "name": "queue_depth", "value": sent + i, "labels": {"pod": f"p{(sent + i) % 100}"}}
            for i in range(count)
        ]
        messages.append((f"{prefix}.{target}", json.dumps(items[0] if batch == 1 else items).encode()))
        sent += count
    return messages


async def publish(url: str, samples: int, batch: int, prefix: str = "scalebus.metrics", rate: float = 0.0) -> None:
    """The publisher process: payloads encoded before connecting, so sending costs only the publish.

    ``rate``: offered samples per second (0: as fast as possible).  Core NATS has no flow control: a
    consumer that falls more than the server's max_pending (64 MB) behind is disconnected as a slow consumer.
    """
    messages = encode_pushes(samples, batch, prefix)
    client = await nats.connect(url, pending_size=64 * 1024 * 1024)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for number, (subject, payload) in enumerate(messages, start=1):
        await client.publish(subject, payload)
        if number % 50 == 0:
            ahead = (number * batch / rate - (loop.time() - started)) if rate else 0.0
            await asyncio.sleep(max(0.0, ahead))
    await client.flush(timeout=30)
    await client.close()


def start_publisher(
    url: str, samples: int, batch: int, prefix: str, rate: float = 0.0
) -> Awaitable[asyncio.subprocess.Process]:
    """The publisher, as its own OS process (it must not share the measured process's CPU time)."""
    return asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.collector.bench",
        "--publish",
        url,
        "--samples",
        str(samples),
        "--batch",
        str(batch),
        "--prefix",
        prefix,
        "--rate",
        str(rate),
        cwd=REPO,
    )


async def measure_ceiling(url: str, samples: int, mode: str) -> float:
    """Messages per second that nats-py delivers to a consumer doing nothing: the bound for one message per sample.

    ``mode`` ``callback``: a subscription callback (what the collector uses); ``iterator``: ``async for`` over
    ``sub.messages`` of a callback-less subscription (nats-py starts a task per message there, so it is slower).
    """
    client = await nats.connect(url)
    received = 0
    subject = f"bench.ceiling.{mode}"

    async def count(_: Msg) -> None:
        nonlocal received
        received += 1

    iterating: asyncio.Task[None] | None = None
    if mode == "callback":
        await client.subscribe(subject + ".>", cb=count, pending_msgs_limit=2 * samples)
    else:
        subscription = await client.subscribe(subject + ".>", pending_msgs_limit=2 * samples)

        async def iterate() -> None:
            async for message in subscription.messages:
                await count(message)

        iterating = asyncio.create_task(iterate())
    await client.flush()
    publisher = await start_publisher(url, samples, 1, subject)
    first = 0.0
    deadline = time.perf_counter() + PHASE_LIMIT_SECONDS
    while received < samples and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
        if received and not first:
            first = time.perf_counter()
    rate = received / max(time.perf_counter() - first, 1e-9) if first else 0.0
    with contextlib.suppress(ProcessLookupError):
        publisher.kill()
    await publisher.wait()
    if iterating is not None:
        iterating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await iterating
    await client.close()
    return rate


async def measure_throughput(
    collector: Collector, url: str, samples: int, batch: int, offered: float = 0.0
) -> tuple[float, int]:
    """Samples ingested per second, from the first ingested sample to the last; and samples lost."""
    counter = collector.metrics.pushed_samples
    base = counter._value.get()
    publisher = await start_publisher(url, samples, batch, "scalebus.metrics", offered)
    first = last = 0.0
    seen = 0.0
    deadline = time.perf_counter() + PHASE_LIMIT_SECONDS
    idle_since = time.perf_counter()
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
        now_seen = counter._value.get() - base
        now = time.perf_counter()
        if now_seen > seen:
            if seen == 0:
                first = now
            seen, last, idle_since = now_seen, now, now
        if seen >= samples or (publisher.returncode is not None and seen and now - idle_since > 1.0):
            break
    with contextlib.suppress(ProcessLookupError):
        publisher.kill()
    await publisher.wait()
    elapsed = max(last - first, 1e-9)
    # The first poll that saw samples missed at most one poll interval of them; count from there.
    return seen / elapsed, int(samples - seen)


async def measure_latency(collector_bus: Bus, url: str, count: int, rate: float) -> list[float]:
    """Milliseconds from a push's send time to the arrival of the snapshot carrying it."""
    arrived: dict[float, float] = {}
    all_arrived = asyncio.Event()
    listener = await nats.connect(url)
    publisher = await nats.connect(url)
    decoder = msgspec.json.Decoder(MetricSnapshot)

    async def on_snapshot(msg: Msg) -> None:
        received = time.time()
        snapshot = decoder.decode(msg.data)
        for sample in snapshot.samples:
            if sample.name == "probe" and sample.value not in arrived:
                arrived[sample.value] = received
        if len(arrived) >= count:
            all_arrived.set()

    await listener.subscribe("scalebus.snapshots.latency", cb=on_snapshot)
    await listener.flush()
    sent: dict[float, float] = {}
    for number in range(count):
        stamp = time.time()
        sent[float(number)] = stamp
        body = {"target": "latency", "name": "probe", "value": number, "labels": {"pod": f"p{number % 5}"}}
        await publisher.publish("scalebus.metrics.latency", json.dumps(body).encode())
        await publisher.flush()
        await asyncio.sleep(1.0 / rate)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_arrived.wait(), timeout=2.0)
    await publisher.close()
    await listener.close()
    return [1000.0 * (arrived[key] - sent[key]) for key in sent if key in arrived]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run() -> int:
    async with NatsServer() as server:
        bus_config = BusConfig(url=server.url, connect_timeout_seconds=2.0, connect_attempts=3)
        bus = await Bus.connect(bus_config, service="collector", instance="collector-bench")
        config = CollectorConfig(
            snapshot_interval_seconds=1.0,
            push=PushConfig(flush_seconds=0.02),
            ownership=OwnershipConfig(),  # as deployed: every push's target is checked for ownership
        )
        collector = Collector(
            config,
            bus=bus,
            instance="collector-bench",
            registry=CollectorRegistry(),
            clock=SystemClock(),
            config_dir=Path("."),
            push_bus_config=bus_config,  # as deployed: pushes on a connection of their own
        )
        await collector.start()
        try:
            print("collector bench: pushed samples (MetricPush over NATS) into one collector")
            for mode in ("callback", "iterator"):
                ceiling = await measure_ceiling(server.url, 100_000, mode)
                print(f"  nats-py ceiling, {mode:>8} doing nothing: {ceiling:>10,.0f} messages/s on this machine")
            # Single samples as fast as the publisher goes; arrays offered at 1.5 x the goal (flat out, a burst of
            # them outruns the collector and the server cuts it off as a slow consumer, losing messages).
            for batch, samples, offered in ((1, 100_000, 0.0), (100, 1_000_000, 1.5 * THROUGHPUT_GOAL)):
                rate, lost = await measure_throughput(collector, server.url, samples, batch, offered)
                verdict = "meets" if rate >= THROUGHPUT_GOAL and not lost else "BELOW"
                pace = f"offered {offered:,.0f}/s" if offered else "unpaced"
                print(
                    f"  ingest, {batch:>3} sample(s)/message: {rate:>10,.0f} samples/s "
                    f"({samples:,} sent {pace}, {lost:,} lost) -> {verdict} the goal of {THROUGHPUT_GOAL:,.0f}/s"
                )
            latencies = await measure_latency(bus, server.url, count=500, rate=200.0)
            if latencies:
                p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
                verdict = "meets" if p99 < LATENCY_GOAL_MS else "ABOVE"
                print(
                    f"  push -> snapshot latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                    f"mean {statistics.fmean(latencies):.1f} ms, max {max(latencies):.1f} ms "
                    f"({len(latencies)}/500 probes, flush window 20 ms) -> {verdict} the goal of p99 < "
                    f"{LATENCY_GOAL_MS:.0f} ms"
                )
            else:
                print("  push -> snapshot latency: no probe arrived")
        finally:
            await collector.stop()
            await bus.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (``argv`` None: no arguments; the publisher role is internal)."""
    parser = argparse.ArgumentParser(prog="scalebus-collector-bench")
    parser.add_argument("--publish", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="scalebus.metrics", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv or [])
    if args.publish:
        asyncio.run(publish(args.publish, args.samples, args.batch, args.prefix, args.rate))
        return 0
    logging.basicConfig(level=logging.ERROR)  # connection notices at shutdown are not figures
    return asyncio.run(run())


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
