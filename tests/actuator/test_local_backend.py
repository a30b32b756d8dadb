"""The local backend supervises real OS processes: start, health-check, stop, restart, no orphans."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from services.actuator.backends.base import PermanentBackendError
from services.actuator.backends.local import LocalBackend
from services.actuator.config import LocalBackendConfig
from shared.clock import SystemClock

Eventually = Callable[..., Awaitable[None]]
MakeBackend = Callable[..., LocalBackend]


@pytest.fixture
async def make_backend(tmp_path: Path) -> AsyncIterator[MakeBackend]:
    """Builds local backends for the target ``web``; every one is stopped at the end of the test."""
    built: list[LocalBackend] = []

    def make(command: list[str], **overrides: object) -> LocalBackend:
        settings: dict[str, object] = {
            "command": command,
            "initial_replicas": 0,
            "health_interval_seconds": 0.1,
            "grace_seconds": 2.0,
            "restart_delay_seconds": 0.1,
        }
        settings.update(overrides)
        backend = LocalBackend("web", LocalBackendConfig(**settings), base_dir=tmp_path, clock=SystemClock())  # type: ignore[arg-type]
        built.append(backend)
        return backend

    yield make
    for backend in built:
        await backend.stop()


async def test_starts_the_initial_replicas_each_on_its_own_port_and_marks_them_ready_when_healthy(
    make_backend: MakeBackend, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    backend = make_backend(replica_command(), initial_replicas=2)
    await backend.start()

    observed = await backend.read()
    assert observed.spec_replicas == 2
    assert observed.current_replicas == 2
    assert {r.name for r in observed.replicas} == {"web-0", "web-1"}
    endpoints = {r.endpoint for r in observed.replicas}
    assert len(endpoints) == 2 and all(e.startswith("http://127.0.0.1:") for e in endpoints)

    await eventually(lambda: backend._observe().ready_replicas == 2)
    async with aiohttp.ClientSession() as session:
        for endpoint in endpoints:
            async with session.get(f"{endpoint}/healthz") as response:
                assert response.status == 200


async def test_a_replica_failing_its_health_check_runs_but_is_not_ready(
    make_backend: MakeBackend, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    backend = make_backend(replica_command("--unhealthy"), initial_replicas=1)
    await backend.start()
    pid = backend._observe().replicas[0].pid
    assert pid > 0
    # Give the prober several rounds: the replica answers 503, so it never becomes ready.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        observed = await backend.read()
        assert observed.current_replicas == 1
        assert observed.ready_replicas == 0
        await asyncio.sleep(0.1)


async def test_scaling_up_adds_replicas_and_scaling_down_stops_the_newest_with_sigterm(
    make_backend: MakeBackend,
    replica_command: Callable[..., list[str]],
    eventually: Eventually,
    pid_alive: Callable[[int], bool],
) -> None:
    backend = make_backend(replica_command(), initial_replicas=1)
    await backend.start()
    await eventually(lambda: backend._observe().ready_replicas == 1)

    observed = await backend.scale(4)
    assert (observed.spec_replicas, observed.current_replicas) == (4, 4)
    await eventually(lambda: backend._observe().ready_replicas == 4)
    pids = {r.name: r.pid for r in backend._observe().replicas}

    observed = await backend.scale(2)
    assert (observed.spec_replicas, observed.current_replicas) == (2, 2)
    terminating = {r.name for r in observed.replicas if r.phase == "Terminating"}
    assert terminating == {"web-2", "web-3"}
    await eventually(lambda: not pid_alive(pids["web-2"]) and not pid_alive(pids["web-3"]))
    await eventually(lambda: {r.name for r in backend._observe().replicas} == {"web-0", "web-1"})
    assert pid_alive(pids["web-0"]) and pid_alive(pids["web-1"])


async def test_a_replica_ignoring_sigterm_is_killed_after_the_grace_period(
    make_backend: MakeBackend,
    replica_command: Callable[..., list[str]],
    eventually: Eventually,
    pid_alive: Callable[[int], bool],
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = make_backend(replica_command("--ignore-sigterm"), initial_replicas=1, grace_seconds=0.5)
    await backend.start()
    await eventually(lambda: backend._observe().ready_replicas == 1)
    pid = backend._observe().replicas[0].pid

    with caplog.at_level(logging.WARNING, logger="services.actuator.backends.local"):
        await backend.scale(0)
        await eventually(lambda: not pid_alive(pid), within=5.0)
        await eventually(lambda: backend._observe().replicas == (), within=5.0)
    escalations = [r for r in caplog.records if r.getMessage() == "replica ignored SIGTERM; killing"]
    assert len(escalations) == 1, "SIGTERM was ignored for the grace period, then SIGKILL ended it"


async def test_a_crashed_replica_is_restarted_under_the_same_name(
    make_backend: MakeBackend, replica_command: Callable[..., list[str]], eventually: Eventually
) -> None:
    backend = make_backend(replica_command("--exit-after", "0.6"), initial_replicas=1)
    await backend.start()
    first_pid = backend._observe().replicas[0].pid
    backend.changed.clear()

    await eventually(lambda: backend._replicas[0].restarts >= 1, within=10.0)
    await eventually(lambda: backend._observe().replicas[0].pid not in (0, first_pid), within=10.0)
    observed = await backend.read()
    assert observed.replicas[0].name == "web-0"
    assert observed.current_replicas == 1
    assert backend.changed.is_set(), "a crash is a change the status publisher must see"


async def test_stop_ends_every_replica_and_its_children_leaving_no_orphans(
    make_backend: MakeBackend,
    replica_command: Callable[..., list[str]],
    eventually: Eventually,
    pid_alive: Callable[[int], bool],
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pids.txt"
    backend = make_backend(replica_command("--spawn-child", "--pid-file", str(pid_file)), initial_replicas=3)
    await backend.start()
    await eventually(lambda: pid_file.exists() and len(pid_file.read_text().split()) == 6)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert all(pid_alive(pid) for pid in pids)

    await backend.stop()

    await eventually(lambda: not any(pid_alive(pid) for pid in pids), within=5.0)
    assert backend._observe().replicas == (), "stop waits for every replica"


async def test_a_command_that_cannot_start_is_a_permanent_error(make_backend: MakeBackend) -> None:
    backend = make_backend(["/nonexistent/scalebus-replica", "--port", "{port}"], health_path="/healthz")
    await backend.start()
    with pytest.raises(PermanentBackendError, match="cannot start web-0"):
        await backend.scale(1)
    assert (await backend.read()).current_replicas == 0
