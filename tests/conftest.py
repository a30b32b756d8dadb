"""Fixtures every test shares: a real nats-server per test, and a connected bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.bus import Bus
from shared.config import BusConfig
from shared.natsserver import NatsServer


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A real nats-server with JetStream on a free 127.0.0.1 port, its store in tmp_path."""
    async with NatsServer(store_dir=tmp_path / "nats-store") as server:
        yield server


@pytest.fixture
def bus_config(nats_server: NatsServer) -> BusConfig:
    return BusConfig(url=nats_server.url, connect_timeout_seconds=1.0, connect_attempts=3, drain_timeout_seconds=2.0)


@pytest.fixture
async def bus(bus_config: BusConfig) -> AsyncIterator[Bus]:
    """A bus connection as the 'test' service, with the core streams declared."""
    connected = await Bus.connect(bus_config, service="test", instance="test-client")
    await connected.ensure_core_streams()
    yield connected
    await connected.close()
