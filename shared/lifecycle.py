"""One start-up and one shutdown path for every service.

start: load config (errors name file, field, reason; exit 2) -> JSON logs -> HTTP server
(/metrics, /livez, /readyz) -> NATS -> service.start() -> ready.
stop (SIGTERM or SIGINT): readiness 503 -> service.stop() (stop fetching, finish in-flight)
-> unsubscribe pull subscriptions -> drain NATS -> exit 0, all under a hard deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec
from prometheus_client import CollectorRegistry

from shared.bus import Bus, BusConnectError
from shared.clock import Clock, SystemClock
from shared.config import ConfigError, ServiceConfig, load_config
from shared.telemetry import BusMetrics, HealthServer, configure_logging

log = logging.getLogger(__name__)

NATS_URL_ENV = "SCALEBUS_NATS_URL"
"""When set, overrides ``service.bus.url`` of every service's config (``make run`` uses it)."""

C = TypeVar("C")


class Service(Protocol):
    """What the lifecycle needs of a service."""

    async def start(self) -> None:
        """Subscribe and start background work; return once the service can do its job."""

    async def stop(self) -> None:
        """Stop taking new work and finish what is in flight."""


@dataclass(frozen=True)
class Runtime:
    """What a service is built with: its bus, metrics registry, health server and clock."""

    service: str
    instance: str
    bus: Bus
    registry: CollectorRegistry
    health: HealthServer
    clock: Clock


def default_instance(service: str) -> str:
    return f"{service}-{socket.gethostname()}-{os.getpid()}"


def parse_args(service: str, argv: list[str] | None) -> Path:
    parser = argparse.ArgumentParser(prog=f"scalebus-{service}", description=f"scalebus {service} service")
    parser.add_argument("--config", "-c", required=True, type=Path, help="YAML config file")
    return parser.parse_args(argv).config  # type: ignore[no-any-return]


def run_service(
    service: str,
    config_type: type[C],
    build: Callable[[C, Runtime, Path], Awaitable[Service]],
    argv: list[str] | None = None,
) -> int:
    """Entry point of a service process; returns the exit code."""
    config_path = parse_args(service, argv)
    try:
        config = load_config(config_path, config_type)
    except ConfigError as exc:
        print(f"scalebus-{service}: invalid configuration: {exc}", file=sys.stderr)
        return 2
    common = getattr(config, "service", None)
    if not isinstance(common, ServiceConfig):
        raise TypeError(f"{config_type.__name__} must have a `service: ServiceConfig` field")
    url = os.environ.get(NATS_URL_ENV, "")
    if url:
        common = msgspec.structs.replace(common, bus=msgspec.structs.replace(common.bus, url=url))
        config = msgspec.structs.replace(config, service=common)  # type: ignore[type-var]
    configure_logging(service, common.log_level)
    try:
        return asyncio.run(_serve(service, config, common, build, config_path))
    except KeyboardInterrupt:  # pragma: no cover - signals are handled inside the loop
        return 0


async def _serve(
    service: str,
    config: C,
    common: ServiceConfig,
    build: Callable[[C, Runtime, Path], Awaitable[Service]],
    config_path: Path,
) -> int:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)

    instance = common.instance or default_instance(service)
    registry = CollectorRegistry()
    health = HealthServer(registry, host=common.http.host, port=common.http.port)
    await health.start()
    log.info("http server listening", extra={"host": common.http.host, "port": health.port})
    try:
        bus = await Bus.connect(
            common.bus, service=service, instance=instance, metrics=BusMetrics(registry, "scalebus")
        )
    except BusConnectError as exc:
        log.error("cannot start: %s", exc)
        await health.stop()
        return 3
    health.add_readiness_check("nats", lambda: bus.connected)
    runtime = Runtime(service, instance, bus, registry, health, SystemClock())
    try:
        svc = await build(config, runtime, config_path)
        await svc.start()
    except Exception:
        log.exception("start-up failed")
        await bus.close()
        await health.stop()
        return 1
    health.set_ready(True)
    log.info("started", extra={"instance": instance})

    await stop_requested.wait()
    log.info("stopping")
    health.set_ready(False)
    code = 0
    try:
        await asyncio.wait_for(_shutdown(svc, bus), timeout=common.shutdown_deadline_seconds)
    except TimeoutError:
        log.error("shutdown deadline of %.0fs passed; exiting anyway", common.shutdown_deadline_seconds)
        code = 1
    await health.stop()
    log.info("stopped")
    return code


async def _shutdown(svc: Service, bus: Bus) -> None:
    try:
        await svc.stop()
    except Exception:
        log.exception("service stop failed")
    await bus.close()
