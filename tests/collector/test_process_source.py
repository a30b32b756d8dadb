"""CPU and memory of real local replica processes (pids as the actuator reports them)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from nats.aio.client import Client as NATS

from services.collector.config import ProcessSourceConfig
from services.collector.discovery import ReplicaDirectory
from services.collector.sources.base import SourceContext
from services.collector.sources.process import ProcessSource
from shared.clock import SystemClock
from shared.schemas import ReplicaStatus, TargetStatus

BUSY = "import time\nend = time.time() + 20\nwhile time.time() < end: pass\n"
IDLE = "import time\ntime.sleep(20)\n"


@pytest.fixture
async def replicas() -> AsyncIterator[dict[str, asyncio.subprocess.Process]]:
    """Two real processes: one spinning on a CPU (for at most 20 s), one sleeping."""
    processes = {
        "web-busy": await asyncio.create_subprocess_exec(sys.executable, "-c", BUSY),
        "web-idle": await asyncio.create_subprocess_exec(sys.executable, "-c", IDLE),
    }
    yield processes
    for process in processes.values():
        if process.returncode is None:
            process.kill()
        await process.wait()


def directory_for(pids: dict[str, int]) -> ReplicaDirectory:
    directory = ReplicaDirectory()
    directory.update(
        TargetStatus(
            target="web",
            backend="local",
            spec_replicas=len(pids),
            current_replicas=len(pids),
            ready_replicas=len(pids),
            observed_at=1.0,
            replicas=tuple(ReplicaStatus(name=name, pid=pid, ready=True) for name, pid in pids.items()),
        )
    )
    return directory


async def test_cpu_cores_and_resident_memory_are_reported_per_pod(
    replicas: dict[str, asyncio.subprocess.Process],
) -> None:
    """The busy replica uses far more CPU than the idle one; the first collection has memory only."""
    directory = directory_for({name: process.pid for name, process in replicas.items()})
    async with aiohttp.ClientSession() as http:
        context = SourceContext(
            target="web", clock=SystemClock(), http=http, replicas=directory, nats=NATS(), config_dir=Path(".")
        )
        source = ProcessSource(msgspec.convert({"type": "process", "name": "procs"}, ProcessSourceConfig), context)
        first = await source.collect()
        assert sorted((s.name, s.labels["pod"]) for s in first) == [("memory", "web-busy"), ("memory", "web-idle")]
        await asyncio.sleep(1.0)
        second = await source.collect()
    values = {(s.name, s.labels["pod"]): s for s in second}
    busy, idle = values[("cpu", "web-busy")], values[("cpu", "web-idle")]
    assert busy.unit == "cores" and busy.quality == "ok"
    assert busy.value > 0.3, busy
    assert idle.value < 0.1, idle
    assert values[("memory", "web-idle")].value > 1_000_000  # a Python interpreter holds megabytes
    assert values[("memory", "web-idle")].unit == "bytes"


async def test_a_replica_whose_process_is_gone_is_an_error_for_that_pod(
    replicas: dict[str, asyncio.subprocess.Process],
) -> None:
    gone = replicas["web-idle"]
    gone.kill()
    await gone.wait()
    directory = directory_for({"web-busy": replicas["web-busy"].pid, "web-idle": gone.pid})
    async with aiohttp.ClientSession() as http:
        context = SourceContext(
            target="web", clock=SystemClock(), http=http, replicas=directory, nats=NATS(), config_dir=Path(".")
        )
        source = ProcessSource(msgspec.convert({"type": "process", "name": "procs"}, ProcessSourceConfig), context)
        samples = await source.collect()
    errors = {(s.name, s.labels["pod"]): s.error for s in samples if s.quality == "error"}
    assert errors == {
        ("cpu", "web-idle"): f"process {gone.pid} is gone",
        ("memory", "web-idle"): f"process {gone.pid} is gone",
    }
    assert any(s.labels["pod"] == "web-busy" and s.quality == "ok" for s in samples)


async def test_configured_requests_are_reported_per_measured_pod_for_utilization_policies(
    replicas: dict[str, asyncio.subprocess.Process],
) -> None:
    """Local replicas have no requests of their own; the configured ones travel as `cpu_request` and
    `memory_request` per pod (a gone replica gets errors for its usage and no requests)."""
    gone = replicas["web-idle"]
    gone.kill()
    await gone.wait()
    directory = directory_for({"web-busy": replicas["web-busy"].pid, "web-idle": gone.pid})
    config = msgspec.convert(
        {"type": "process", "name": "procs", "cpu_request": "500m", "memory_request": "128Mi"}, ProcessSourceConfig
    )
    async with aiohttp.ClientSession() as http:
        context = SourceContext(
            target="web", clock=SystemClock(), http=http, replicas=directory, nats=NATS(), config_dir=Path(".")
        )
        source = ProcessSource(config, context)
        samples = await source.collect()
    requests = {(s.name, s.labels["pod"]): (s.value, s.unit, s.quality) for s in samples if s.name.endswith("_request")}
    assert requests == {
        ("cpu_request", "web-busy"): (0.5, "cores", "ok"),
        ("memory_request", "web-busy"): (128 * 2**20, "bytes", "ok"),
    }
    assert source.metric_names == ("cpu", "memory", "cpu_request", "memory_request")
