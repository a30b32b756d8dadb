"""The collector as a real OS process: started like `make run` does, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import aiohttp

from shared.bus import Bus
from shared.config import BusConfig
from shared.natsserver import free_port
from shared.schemas import MetricPush, MetricSnapshot, ReplicaStatus, TargetStatus

from .conftest import ServiceStarter, SnapshotListener

REPO = Path(__file__).resolve().parents[2]
QUIET = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}


async def test_the_demo_config_runs_as_a_process_publishes_snapshots_and_stops_cleanly_on_sigterm(
    bus: Bus, bus_config: BusConfig, snapshots: SnapshotListener, start_service: ServiceStarter
) -> None:
    process = await start_service("collector", REPO / "deploy/local/collector.yaml", bus_config.url, **QUIET)
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


async def test_an_invalid_config_stops_start_up_naming_file_field_and_reason(
    tmp_path: Path, start_service: ServiceStarter
) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text("targets:\n  - name: web\n    sources:\n      - {type: scrape, name: s, metrics: []}\n")
    process = await start_service("collector", config, "nats://127.0.0.1:1", stdout=asyncio.subprocess.DEVNULL)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30.0)
    assert process.returncode == 2
    message = stderr.decode()
    assert str(config) in message and "targets[0].sources[0]" in message and "needs `discover: true`" in message


async def test_the_demo_config_measures_a_real_demo_workload_replica_per_pod(
    bus: Bus, bus_config: BusConfig, snapshots: SnapshotListener, start_service: ServiceStarter
) -> None:
    """The `make run` path: a demo workload replica announced in TargetStatus is scraped into a per-pod
    request rate, and its process into per-pod cpu and memory, with the configured requests."""
    port = free_port()
    replica = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scalebus.demo.workload", "--port", str(port), "--service-time", "0.01", cwd=REPO
    )
    collector = await start_service("collector", REPO / "deploy/local/collector.yaml", bus_config.url, **QUIET)
    try:
        endpoint = f"http://127.0.0.1:{port}"

        async def announce_and_load() -> None:
            async with aiohttp.ClientSession() as http:
                for _ in range(300):  # bounded: at most ~30 s of 10 requests per second
                    status = TargetStatus(
                        target="web",
                        backend="local",
                        spec_replicas=1,
                        current_replicas=1,
                        ready_replicas=1,
                        observed_at=time.time(),
                        replicas=(ReplicaStatus(name="web-0", endpoint=endpoint, pid=replica.pid, ready=True),),
                    )
                    await bus.publish(bus.subjects.status("web"), status)
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(endpoint + "/") as response:
                            await response.read()
                    await asyncio.sleep(0.1)

        load = asyncio.create_task(announce_and_load())

        def measured(snapshot: MetricSnapshot) -> bool:
            names = {s.name for s in snapshot.samples if s.quality == "ok" and s.labels.get("pod") == "web-0"}
            return {"demo_requests_per_second", "cpu", "memory", "cpu_request", "memory_request"} <= names

        try:
            snapshot = await snapshots.wait_for(measured, within=30.0)
        finally:
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
        by_name = {s.name: s for s in snapshot.samples if s.labels.get("pod") == "web-0"}
        assert by_name["demo_requests_per_second"].value > 0
        assert by_name["memory"].value > 1_000_000 and by_name["memory"].unit == "bytes"
        assert by_name["cpu"].unit == "cores"
        assert (by_name["cpu_request"].value, by_name["memory_request"].value) == (0.5, 128 * 2**20)
    finally:
        collector.send_signal(signal.SIGTERM)
        replica.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(collector.wait(), timeout=15.0) == 0
        await asyncio.wait_for(replica.wait(), timeout=15.0)
