"""`scalebus run` (`make run`): the whole loop on one machine.

Starts an embedded nats-server, the collector, decider and actuator as three OS processes,
follows the bus on the console, and drives the demo workload with a bounded load generator.
SIGINT or SIGTERM stops everything (services, replicas, nats-server) and removes temp dirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import msgspec
import psutil

from scalebus.demo.console import Console
from scalebus.demo.loadgen import LoadGenerator, LoadProfile
from shared.bus import Bus
from shared.codec import MessageDecoder
from shared.config import BusConfig, Config, load_config
from shared.lifecycle import NATS_URL_ENV
from shared.natsserver import NatsServer
from shared.schemas import DecisionBatch, ExecutionResult, TargetStatus

SERVICES = ("actuator", "collector", "decider")


class DemoConfig(Config, frozen=True, kw_only=True):
    """deploy/local/demo.yaml: which service configs to run and the load to apply."""

    target: str = "web"
    collector: str = "collector.yaml"
    decider: str = "decider.yaml"
    actuator: str = "actuator.yaml"
    load: LoadProfile = msgspec.field(default_factory=LoadProfile)
    status_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    stop_grace_seconds: Annotated[float, msgspec.Meta(gt=0, le=12)] = 9.0


class ServiceProcess:
    """One service as a child OS process, its JSON logs in a file."""

    def __init__(self, name: str, config: Path, log_dir: Path, nats_url: str) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        env = {**os.environ, NATS_URL_ENV: nats_url, "PYTHONUNBUFFERED": "1"}
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}.main", "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )

    def descendants(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return list(psutil.Process(self.process.pid).children(recursive=True))
        return []

    def close_log(self) -> None:
        self._log.close()


async def _stop_processes(services: list[ServiceProcess], grace: float) -> list[str]:
    """SIGTERM every service, wait ``grace``, SIGKILL what is left (descendants included).

    Returns the names of the services that had to be killed.
    """
    family = [p for s in services for p in s.descendants()]
    for service in services:
        if service.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                service.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for service in services:
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(service.process.wait, max(0.0, deadline - time.monotonic()))
    killed = []
    for service in services:
        if service.process.poll() is None:
            killed.append(service.name)
            service.process.kill()
            service.process.wait()
        service.close_log()
    for orphan in family:
        with contextlib.suppress(psutil.Error):
            if orphan.is_running():
                orphan.kill()
    return killed


async def run_demo(config_path: Path, *, duration: float | None = None, log_dir: Path | None = None) -> int:
    """Run the loop until a signal (or ``duration`` seconds); returns the exit code."""
    config = load_config(config_path, DemoConfig)
    base = config_path.parent
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    scratch = Path(tempfile.mkdtemp(prefix="scalebus-run-"))
    logs = log_dir or scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    console = Console()
    services: list[ServiceProcess] = []
    nats = NatsServer(store_dir=scratch / "nats")
    code = 0
    try:
        await nats.start()
        console.print(f"nats-server ready at {nats.url} (JetStream store in {scratch / 'nats'})")
        for name in SERVICES:
            services.append(ServiceProcess(name, base / getattr(config, name), logs, nats.url))
        console.print(f"started {', '.join(SERVICES)}; their JSON logs: {logs}")
        bus = await Bus.connect(BusConfig(url=nats.url), service="console", instance="scalebus-run")
        code = await _follow(bus, config=config, console=console, services=services, stop=stop, duration=duration)
        await bus.close()
    finally:
        console.print("stopping: services, replicas, nats-server")
        killed = await _stop_processes(services, config.stop_grace_seconds)
        if killed:
            console.print(f"had to kill {', '.join(killed)} after {config.stop_grace_seconds:.0f}s")
            code = code or 1
        await nats.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        console.print(f"stopped: {console.scale_ups} scale-ups, {console.scale_downs} scale-downs")
    return code


async def _follow(
    bus: Bus,
    *,
    config: DemoConfig,
    console: Console,
    services: list[ServiceProcess],
    stop: asyncio.Event,
    duration: float | None,
) -> int:
    loadgen = LoadGenerator(config.load)

    async def on_status(status: TargetStatus, _: object) -> None:
        console.on_status(status)
        if status.target == config.target:
            loadgen.observe(status)

    async def on_decisions(batch: DecisionBatch, _: object) -> None:
        console.on_decisions(batch)

    async def on_result(result: ExecutionResult, _: object) -> None:
        console.on_result(result)

    s = bus.subjects
    await bus.subscribe(s.status_all, MessageDecoder(TargetStatus), on_status)
    await bus.subscribe(s.decisions, MessageDecoder(DecisionBatch), on_decisions)
    await bus.subscribe(s.results_all, MessageDecoder(ExecutionResult), on_result)
    load = asyncio.create_task(loadgen.run(stop))
    started = time.monotonic()
    code = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=config.status_interval_seconds)
            console.status_line(rate=loadgen.current_rate, sent=loadgen.sent, failed=loadgen.failed)
            dead = [svc.name for svc in services if svc.process.poll() is not None]
            if dead:
                console.print(f"service exited unexpectedly: {', '.join(dead)} (see {services[0].log_path.parent})")
                code = 1
                break
            if duration is not None and time.monotonic() - started >= duration:
                break
            if load.done():
                console.print("load generator finished its cycles")
                break
    finally:
        stop.set()
        await load
    return code
