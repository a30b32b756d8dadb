"""JSON logs, Prometheus metrics and the one HTTP server of a process (/metrics, /livez, /readyz)."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra=`` fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send JSON logs of this process to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class BusMetrics:
    """Message counters of the bus wrapper, labelled by subject family."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.received = Counter(f"{prefix}_bus_messages_received", "Messages received", ["subject"], registry=registry)
        self.published = Counter(
            f"{prefix}_bus_messages_published", "Messages published", ["subject"], registry=registry
        )
        self.dead_lettered = Counter(
            f"{prefix}_bus_dead_letters", "Messages sent to the dead-letter subject", ["subject"], registry=registry
        )
        self.connected = Gauge(f"{prefix}_bus_connected", "1 while connected to NATS", registry=registry)


class HealthServer:
    """aiohttp server for /metrics, /livez and /readyz; readiness is set by the service lifecycle."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        readiness_checks: dict[str, Callable[[], bool]] | None = None,
    ) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._checks = dict(readiness_checks or {})
        self._ready = False
        self._started_at = time.time()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def add_readiness_check(self, name: str, check: Callable[[], bool]) -> None:
        self._checks[name] = check

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    @property
    def ready(self) -> bool:
        return self._ready and all(check() for check in self._checks.values())

    async def start(self) -> None:
        app = web.Application(handler_args={"access_log": None})
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # aiohttp exposes no public accessor for the bound port
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _livez(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "uptime_seconds": round(time.time() - self._started_at, 1)})

    async def _readyz(self, _: web.Request) -> web.Response:
        checks = {name: check() for name, check in self._checks.items()}
        ready = self._ready and all(checks.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", "started": self._ready, "checks": checks},
            status=200 if ready else 503,
        )
