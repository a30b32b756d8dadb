"""The collector as a real OS process: started like `make run` does, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from shared.bus import Bus
from shared.config import BusConfig
from shared.schemas import MetricPush

from .conftest import SnapshotListener

REPO = Path(__file__).resolve().parents[2]


async def start_collector(config: Path, nats_url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.collector.main",
        "--config",
        str(config),
        cwd=REPO,
        env={**os.environ, "SCALEBUS_NATS_URL": nats_url},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_the_demo_config_runs_as_a_process_publishes_snapshots_and_stops_cleanly_on_sigterm(
    bus: Bus, bus_config: BusConfig, snapshots: SnapshotListener
) -> None:
    process = await start_collector(REPO / "deploy/local/collector.yaml", bus_config.url)
    try:
        # `web` is configured: it gets a snapshot every second even before any replica exists.
        first = await snapshots.wait_for(lambda s: s.target == "web", within=20.0)
        assert first.collector.startswith("collector-")
        await bus.publish(bus.subjects.metrics("web"), MetricPush(target="web", name="queue_depth", value=7))
        pushed = await snapshots.wait_for(
            lambda s: s.target == "web" and any(x.name == "queue_depth" for x in s.samples), within=5.0
        )
        assert pushed.sequence > first.sequence
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=15.0)
    assert code == 0


async def test_an_invalid_config_stops_start_up_naming_file_field_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text("targets:\n  - name: web\n    sources:\n      - {type: scrape, name: s, metrics: []}\n")
    process = await start_collector(config, "nats://127.0.0.1:1")
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30.0)
    assert process.returncode == 2
    message = stderr.decode()
    assert str(config) in message and "targets[0].sources[0]" in message and "needs `discover: true`" in message
