"""The demo workload: one replica of a small HTTP service.

``GET /`` does a unit of work (a fixed service time), ``GET /healthz`` answers 200 once the
replica is ready, and ``GET /metrics`` exposes Prometheus text with ``demo_requests_total``
and ``demo_inflight_requests``.  The actuator's local backend runs N copies of it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest


class WorkloadMetrics:
    def __init__(self, registry: CollectorRegistry, prefix: str = "demo") -> None:
        self.requests = Counter(f"{prefix}_requests", "Requests served", registry=registry)
        self.inflight = Gauge(f"{prefix}_inflight_requests", "Requests being served", registry=registry)


def build_app(service_time: float, startup_delay: float) -> web.Application:
    registry = CollectorRegistry()
    metrics = WorkloadMetrics(registry)
    ready = asyncio.Event()

    async def work(_: web.Request) -> web.Response:
        with metrics.inflight.track_inprogress():
            await asyncio.sleep(service_time)
        metrics.requests.inc()
        return web.Response(text="ok\n")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ready\n") if ready.is_set() else web.Response(status=503, text="starting\n")

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def become_ready(_: web.Application) -> None:
        async def later() -> None:
            await asyncio.sleep(startup_delay)
            ready.set()

        task = asyncio.create_task(later())
        app["ready_task"] = task

    app = web.Application()
    app.router.add_get("/", work)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", scrape)
    app.on_startup.append(become_ready)
    return app


async def serve(port: int, service_time: float, startup_delay: float) -> None:
    runner = web.AppRunner(build_app(service_time, startup_delay), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.shutdown()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scalebus-demo-workload")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service-time", type=float, default=0.1, help="seconds of work per request")
    parser.add_argument("--startup-delay", type=float, default=0.3, help="seconds before /healthz answers 200")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.service_time, args.startup_delay))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
