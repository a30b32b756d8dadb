"""Fixtures of the decider tests: a policy directory and a Decider built as `main.build` builds it."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.decider.config import DeciderConfig
from services.decider.main import build
from services.decider.service import Decider
from shared.bus import Bus
from shared.clock import ManualClock
from shared.config import BusConfig, ServiceConfig
from shared.lifecycle import Runtime
from shared.telemetry import HealthServer

REPO = Path(__file__).resolve().parents[2]
DEMO_POLICY = REPO / "deploy" / "local" / "policies" / "web.yaml"

DeciderFactory = Callable[..., Awaitable[Decider]]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A policies directory holding the demo policy (deploy/local/policies/web.yaml)."""
    directory = tmp_path / "policies"
    directory.mkdir()
    shutil.copy(DEMO_POLICY, directory / "web.yaml")
    return directory


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=time.time())


@pytest.fixture
async def make_decider(bus_config: BusConfig, policy_dir: Path, clock: ManualClock) -> AsyncIterator[DeciderFactory]:
    """Builds and starts deciders (stopped and disconnected at teardown); the tick loop is made idle."""
    started: list[tuple[Decider, Bus]] = []

    async def factory(**overrides: object) -> Decider:
        settings: dict[str, object] = {
            "policies_dir": str(policy_dir),
            "tick_interval_seconds": 3600.0,
            "reload_interval_seconds": 3600.0,
        }
        settings.update(overrides)
        config = DeciderConfig(service=ServiceConfig(bus=bus_config), **settings)  # type: ignore[arg-type]
        registry = CollectorRegistry()
        bus = await Bus.connect(bus_config, service="decider", instance="decider-test")
        runtime = Runtime("decider", "decider-test", bus, registry, HealthServer(registry), clock)
        decider = await build(config, runtime, policy_dir.parent / "decider.yaml")
        await decider.start()
        started.append((decider, bus))
        return decider

    yield factory
    for decider, bus in started:
        await decider.stop()
        await bus.close()
