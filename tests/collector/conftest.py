"""Fixtures of the collector tests: real HTTP exporters serving Prometheus text, snapshot listeners."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from services.collector.config import CollectorConfig
from services.collector.service import Collector
from shared.bus import Bus
from shared.clock import SystemClock
from shared.config import BusConfig
from shared.schemas import MetricSnapshot, ReplicaStatus, TargetStatus


@dataclass
class Exporter:
    """A real HTTP server on 127.0.0.1 serving a Prometheus text exposition that tests change at will."""

    requests_total: float = 0.0
    inflight: float = 0.0
    delay_seconds: float = 0.0
    body_override: str | None = None
    status: int = 200
    scrapes: int = 0
    url: str = ""
    _runner: web.AppRunner | None = field(default=None, repr=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def exposition(self) -> str:
        return (
            "# HELP demo_requests_total Requests served\n"
            "# TYPE demo_requests_total counter\n"
            f"demo_requests_total {self.requests_total}\n"
            "# HELP demo_inflight_requests Requests being served\n"
            "# TYPE demo_inflight_requests gauge\n"
            f"demo_inflight_requests {self.inflight}\n"
        )

    async def _metrics(self, _: web.Request) -> web.Response:
        self.scrapes += 1
        if self.delay_seconds:
            with contextlib.suppress(TimeoutError):  # a slow answer, cut short when the test ends
                await asyncio.wait_for(self._stopping.wait(), self.delay_seconds)
        body = self.body_override if self.body_override is not None else self.exposition()
        return web.Response(text=body, status=self.status, content_type="text/plain")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def exporter_factory() -> AsyncIterator[Callable[[], Awaitable[Exporter]]]:
    started: list[Exporter] = []

    async def make() -> Exporter:
        exporter = Exporter()
        await exporter.start()
        started.append(exporter)
        return exporter

    yield make
    for exporter in started:
        await exporter.stop()


class SnapshotListener:
    """Collects every MetricSnapshot published on the bus."""

    def __init__(self) -> None:
        self.snapshots: list[MetricSnapshot] = []
        self._arrived = asyncio.Event()

    async def attach(self, bus: Bus) -> None:
        decoder = msgspec.json.Decoder(MetricSnapshot)

        async def on_message(msg: object) -> None:
            self.snapshots.append(decoder.decode(msg.data))  # type: ignore[attr-defined]
            self._arrived.set()

        await bus.nc.subscribe(bus.subjects.snapshots_all, cb=on_message)

    async def wait_for(self, predicate: Callable[[MetricSnapshot], bool], within: float = 10.0) -> MetricSnapshot:
        """The first snapshot (already received or arriving within ``within`` seconds) that satisfies ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        seen = 0
        while True:
            for snapshot in self.snapshots[seen:]:
                if predicate(snapshot):
                    return snapshot
            seen = len(self.snapshots)
            remaining = deadline - loop.time()
            if remaining <= 0:
                last = self.snapshots[-1] if self.snapshots else None
                raise AssertionError(f"no matching snapshot within {within}s; last: {last}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)


@pytest.fixture
async def snapshots(bus: Bus) -> SnapshotListener:
    listener = SnapshotListener()
    await listener.attach(bus)
    await bus.nc.flush()
    return listener


CollectorFactory = Callable[..., Awaitable[Collector]]
ServiceStarter = Callable[..., Awaitable[asyncio.subprocess.Process]]
"""The `start_service` fixture of tests/conftest.py: ``await start_service("collector", config, nats_url, ...)``."""


@pytest.fixture
async def collector_factory(bus_config: BusConfig, tmp_path: Path) -> AsyncIterator[CollectorFactory]:
    """Starts Collector instances, each with its own bus connections (main and pushes, as `main` does); stops them
    at the end."""
    running: list[tuple[Collector, Bus]] = []

    async def make(config: CollectorConfig, instance: str = "collector-test") -> Collector:
        collector_bus = await Bus.connect(bus_config, service="collector", instance=instance)
        collector = Collector(
            config,
            bus=collector_bus,
            instance=instance,
            registry=CollectorRegistry(),
            clock=SystemClock(),
            config_dir=tmp_path,
            push_bus_config=bus_config,
        )
        await collector.start()
        running.append((collector, collector_bus))
        return collector

    yield make
    for collector, collector_bus in running:
        await collector.stop()
        await collector_bus.close()


def web_status(*replicas: tuple[str, str], observed_at: float | None = None) -> TargetStatus:
    """The actuator's TargetStatus of target `web` with ready replicas (name, endpoint URL)."""
    return TargetStatus(
        target="web",
        backend="local",
        spec_replicas=len(replicas),
        current_replicas=len(replicas),
        ready_replicas=len(replicas),
        observed_at=time.time() if observed_at is None else observed_at,
        replicas=tuple(ReplicaStatus(name=name, endpoint=url, ready=True) for name, url in replicas),
    )


def config_from(data: dict[str, object]) -> CollectorConfig:
    """A CollectorConfig from plain data, as if it came from YAML."""
    return msgspec.convert(data, CollectorConfig, strict=False)
