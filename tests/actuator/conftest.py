"""Fixtures of the actuator tests: the test replica command, bounded waiting, actuator services on a real bus."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from services.actuator.config import ActuatorConfig
from services.actuator.service import ActuatorService
from shared.bus import Bus
from shared.clock import Clock, SystemClock
from shared.codec import MessageDecoder
from shared.config import BusConfig, ServiceConfig
from shared.lifecycle import Runtime
from shared.telemetry import HealthServer

REPLICA_APP = Path(__file__).with_name("replica_app.py")

Eventually = Callable[..., Awaitable[None]]


def _replica_command(*extra: str) -> list[str]:
    return ["{python}", str(REPLICA_APP), "--port", "{port}", *extra]


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone: it has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def _eventually(check: Callable[[], bool], *, within: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


@pytest.fixture
def replica_command() -> Callable[..., list[str]]:
    """The test replica (a stdlib HTTP server with /healthz) as a local-backend command, plus extra flags."""
    return _replica_command


@pytest.fixture
def pid_alive() -> Callable[[int], bool]:
    return _pid_alive


@pytest.fixture
def eventually() -> Eventually:
    """``await eventually(check, within=...)``: poll a condition, bounded in time."""
    return _eventually


class Listener:
    """Collects every message of one type published on a subject (core NATS)."""

    def __init__(self, message_type: Any) -> None:
        self.messages: list[Any] = []
        self._decoder: MessageDecoder[Any] = MessageDecoder(message_type)

    async def on_message(self, message: Any, _msg: object) -> None:
        self.messages.append(message)


@pytest.fixture
async def listen(bus: Bus) -> Callable[[str, Any], Awaitable[Listener]]:
    """``await listen(subject, MessageType)`` -> a Listener collecting what arrives."""

    async def subscribe(subject: str, message_type: Any) -> Listener:
        listener = Listener(message_type)
        await bus.subscribe(subject, listener._decoder, listener.on_message)
        return listener

    return subscribe


class ActuatorHarness:
    """Starts actuator services the way the lifecycle does (own bus connection each) and stops them all."""

    def __init__(self, bus_config: BusConfig, tmp_path: Path) -> None:
        self._bus_config = bus_config
        self._tmp_path = tmp_path
        self.running: list[tuple[ActuatorService, Bus]] = []

    async def start(
        self, config: ActuatorConfig | dict[str, Any], *, instance: str = "actuator-test", clock: Clock | None = None
    ) -> ActuatorService:
        if isinstance(config, dict):
            config = msgspec.convert(config, ActuatorConfig)
        config = msgspec.structs.replace(config, service=ServiceConfig(instance=instance, bus=self._bus_config))
        registry = CollectorRegistry()
        bus = await Bus.connect(self._bus_config, service="actuator", instance=instance)
        runtime = Runtime("actuator", instance, bus, registry, HealthServer(registry), clock or SystemClock())
        service = ActuatorService(config, runtime, self._tmp_path)
        await service.start()
        self.running.append((service, bus))
        return service

    async def stop(self, service: ActuatorService) -> None:
        for entry in list(self.running):
            if entry[0] is service:
                self.running.remove(entry)
                await service.stop()
                await entry[1].close()

    async def stop_all(self) -> None:
        for service, _ in list(self.running):
            await self.stop(service)


@pytest.fixture
async def actuators(bus_config: BusConfig, tmp_path: Path, bus: Bus) -> AsyncIterator[ActuatorHarness]:
    """Actuator services on the test's nats-server, stopped (replicas included) at the end of the test."""
    harness = ActuatorHarness(bus_config, tmp_path)
    yield harness
    await harness.stop_all()
