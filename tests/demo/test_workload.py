"""The demo workload is a real HTTP process: ready after start-up, counts requests, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp

from shared.natsserver import free_port


async def test_a_replica_becomes_ready_serves_work_and_exposes_its_counters() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scalebus.demo.workload", "--port", str(port), "--service-time", "0.01"
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(base + "/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the replica never became ready")
            for _ in range(3):
                async with session.get(base + "/") as response:
                    assert response.status == 200
            async with session.get(base + "/metrics") as response:
                text = await response.text()
        assert "demo_requests_total 3.0" in text
        assert "demo_inflight_requests 0.0" in text
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
