"""Every service starts and stops the same way (shared.lifecycle.run_service), as a real process."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from shared.natsserver import NatsServer, free_port

PROBE = Path(__file__).with_name("probe_service.py")


async def start_probe(config: Path, env_url: str | None = None) -> asyncio.subprocess.Process:
    env = None
    if env_url is not None:
        import os

        env = {**os.environ, "SCALEBUS_NATS_URL": env_url}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROBE),
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def read_port(process: asyncio.subprocess.Process) -> int:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=15)
    assert line.startswith(b"port="), line
    return int(line.split(b"=")[1])


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def wait_ready(port: int) -> None:
    for _ in range(100):
        status, _ = await get(f"http://127.0.0.1:{port}/readyz")
        if status == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never became ready")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_service_serves_health_and_metrics_and_stops_cleanly_on_a_signal(
    nats_server: NatsServer, tmp_path: Path, sig: signal.Signals
) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(f"service:\n  bus:\n    url: {nats_server.url}\n  http:\n    port: 0\n")
    process = await start_probe(config)
    port = await read_port(process)
    await wait_ready(port)
    assert (await get(f"http://127.0.0.1:{port}/livez"))[0] == 200
    status, metrics = await get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert "scalebus_bus_connected 1.0" in metrics

    process.send_signal(sig)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
    assert process.returncode == 0, stderr.decode()
    assert b"stopped-cleanly" in stdout
    assert b'"msg": "stopped"' in stderr


async def test_an_invalid_config_stops_start_up_naming_file_field_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text("service:\n  http:\n    port: lots\n")
    process = await start_probe(config)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
    assert process.returncode == 2
    message = stderr.decode()
    assert str(config) in message
    assert "service.http.port" in message
    assert "int" in message


async def test_a_missing_config_file_stops_start_up(tmp_path: Path) -> None:
    process = await start_probe(tmp_path / "absent.yaml")
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
    assert process.returncode == 2
    assert "absent.yaml: file not found" in stderr.decode()


async def test_unreachable_nats_fails_start_up_within_its_bound(tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(
        f"service:\n  bus:\n    url: nats://127.0.0.1:{free_port()}\n"
        "    connect_timeout_seconds: 0.5\n    connect_attempts: 2\n"
    )
    process = await start_probe(config)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 3
    assert b"cannot reach NATS" in stderr


async def test_the_nats_url_can_be_overridden_from_the_environment(nats_server: NatsServer, tmp_path: Path) -> None:
    config = tmp_path / "probe.yaml"
    config.write_text(f"service:\n  bus:\n    url: nats://127.0.0.1:{free_port()}\n    connect_attempts: 1\n")
    process = await start_probe(config, env_url=nats_server.url)
    port = await read_port(process)
    await wait_ready(port)
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.communicate(), timeout=15)
    assert process.returncode == 0
