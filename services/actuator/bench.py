"""Benchmark: decisions executed per second in dry-run, through the whole pipeline on a real nats-server.

Decisions travel as they do in production: published to the JetStream decisions stream, pulled by
the actuator's durable consumer, judged (validation, staleness, idempotency lookup in the KV bucket,
breaker, bounds, step, rate limit), and answered with an ExecutionResult on the results stream.
Bounded: a fixed number of decisions and a hard time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.actuator.config import ActuatorConfig, LocalBackendConfig, SafetyConfig, TargetConfig
from services.actuator.service import ActuatorService
from shared.bus import Bus
from shared.clock import SystemClock
from shared.codec import MessageDecoder
from shared.config import BusConfig, ServiceConfig
from shared.lifecycle import Runtime
from shared.natsserver import NatsServer
from shared.schemas import Decision, DecisionBatch, ExecutionResult
from shared.telemetry import HealthServer

TARGETS = 8
BATCHES = 250
TIME_LIMIT_SECONDS = 45.0


def bench_config(url: str) -> ActuatorConfig:
    backend = LocalBackendConfig(command=["{python}", "-c", "pass"], health_path="", initial_replicas=0)
    return ActuatorConfig(
        service=ServiceConfig(instance="actuator-bench", bus=BusConfig(url=url)),
        targets=[TargetConfig(name=f"t{n}", backend=backend, min_replicas=0, max_replicas=50) for n in range(TARGETS)],
        dry_run=True,
        safety=SafetyConfig(min_change_interval_seconds=0.0),
    )


async def run() -> tuple[int, float]:
    async with NatsServer() as server:
        bus_config = BusConfig(url=server.url)
        client = await Bus.connect(bus_config, service="bench", instance="bench-client")
        await client.ensure_core_streams()
        received: list[ExecutionResult] = []
        done = asyncio.Event()
        total = TARGETS * BATCHES

        async def on_result(result: ExecutionResult, _: object) -> None:
            received.append(result)
            if len(received) >= total:
                done.set()

        await client.subscribe(client.subjects.results_all, MessageDecoder(ExecutionResult), on_result)
        registry = CollectorRegistry()
        actuator_bus = await Bus.connect(bus_config, service="actuator", instance="actuator-bench")
        runtime = Runtime("actuator", "actuator-bench", actuator_bus, registry, HealthServer(registry), SystemClock())
        service = ActuatorService(bench_config(server.url), runtime, base_dir=Path.cwd())
        await service.start()
        try:
            started = time.perf_counter()
            for tick in range(BATCHES):
                now = time.time()
                decisions = tuple(
                    Decision(
                        id=uuid.uuid4().hex,
                        target=f"t{n}",
                        current_replicas=0,
                        desired_replicas=1 + tick % 40,
                        reason="Bench",
                        decided_at=now,
                    )
                    for n in range(TARGETS)
                )
                batch = DecisionBatch(
                    batch_id=uuid.uuid4().hex, decider="bench", tick=tick, decided_at=now, decisions=decisions
                )
                await client.publish_persistent(client.subjects.decisions, batch, msg_id=batch.batch_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=TIME_LIMIT_SECONDS)
            elapsed = time.perf_counter() - started
        finally:
            await service.stop()
            await actuator_bus.close()
            await client.close()
        return len(received), elapsed


def main() -> int:
    count, elapsed = asyncio.run(run())
    total = TARGETS * BATCHES
    print(
        f"actuator dry-run: {count}/{total} decisions in {elapsed:.2f}s -> {count / elapsed:,.0f} decisions/s "
        f"({TARGETS} targets, {BATCHES} batches, via JetStream + KV lookups)"
    )
    return 0 if count == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
