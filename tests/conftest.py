"""Fixtures every test shares: a real nats-server per test, and a connected bus."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from shared.bus import Bus
from shared.config import BusConfig
from shared.lifecycle import NATS_URL_ENV
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


REPO = Path(__file__).resolve().parents[1]
ServiceStarter = Callable[..., Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def start_service() -> AsyncIterator[ServiceStarter]:
    """Start a service as `make run` does: ``python -m services.<name>.main --config FILE`` with the NATS URL in
    the environment. Stdout and stderr are pipes unless given; processes still running at teardown are killed."""
    started: list[asyncio.subprocess.Process] = []

    async def start(
        name: str,
        config: Path,
        nats_url: str,
        *,
        stdout: int = asyncio.subprocess.PIPE,
        stderr: int = asyncio.subprocess.PIPE,
    ) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"services.{name}.main",
            "--config",
            str(config),
            cwd=REPO,
            env={**os.environ, NATS_URL_ENV: nats_url},
            stdout=stdout,
            stderr=stderr,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()
