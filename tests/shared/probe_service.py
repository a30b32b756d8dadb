"""A minimal service run through shared.lifecycle.run_service, for the lifecycle tests."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from nats.aio.msg import Msg

from shared.codec import MessageDecoder
from shared.config import Config, ServiceConfig
from shared.lifecycle import Runtime, run_service
from shared.schemas import MetricPush


class ProbeConfig(Config, frozen=True, kw_only=True):
    service: ServiceConfig = ServiceConfig()
    stop_seconds: float = 0.0


class ProbeService:
    def __init__(self, config: ProbeConfig, runtime: Runtime) -> None:
        self._config = config
        self._runtime = runtime

    async def start(self) -> None:
        bus = self._runtime.bus

        async def echo(message: MetricPush, _: Msg) -> None:
            await bus.publish(bus.subjects.snapshots(message.target), message)

        await bus.subscribe(bus.subjects.metrics_all, MessageDecoder(MetricPush), echo)
        print(f"port={self._runtime.health.port}", flush=True)

    async def stop(self) -> None:
        await asyncio.sleep(self._config.stop_seconds)
        print("stopped-cleanly", flush=True)


async def build(config: ProbeConfig, runtime: Runtime, _: Path) -> ProbeService:
    return ProbeService(config, runtime)


if __name__ == "__main__":
    sys.exit(run_service("probe", ProbeConfig, build))
