"""The actuator as `make run` starts it: a real process with the committed demo config shape, a real
nats-server, real replicas; it prints nothing on stdout, logs JSON on stderr, stops cleanly and leaves
no replica behind.  Bad configuration stops start-up naming file, field and reason."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.actuator.config import ActuatorConfig, LocalBackendConfig, validate_actuator_config
from shared.bus import Bus
from shared.config import ConfigError, load_config
from shared.natsserver import NatsServer
from shared.schemas import Decision, DecisionBatch, ExecutionResult, TargetStatus

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "deploy" / "local" / "actuator.yaml"
Eventually = Callable[..., Awaitable[None]]
ServiceStarter = Callable[..., Awaitable[asyncio.subprocess.Process]]


def test_the_demo_config_is_valid_and_runs_the_demo_workload_for_web() -> None:
    config = load_config(DEMO_CONFIG, ActuatorConfig)
    web = config.target("web")
    assert web is not None and (web.min_replicas, web.max_replicas) == (1, 8)
    assert isinstance(web.backend, LocalBackendConfig)
    assert web.backend.command == ["{python}", "-m", "scalebus.demo.workload", "--port", "{port}"]
    assert web.backend.health_path == "/healthz"
    assert not config.dry_run


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        (
            {"targets": [{"name": "web", "backend": {"type": "local", "command": ["x"], "colour": 1}}]},
            "targets[0].backend",
            "unknown field",
        ),
        (
            {"targets": [{"name": "web", "backend": {"type": "ssh", "command": ["x"]}}]},
            "targets[0].backend",
            "Invalid value 'ssh'",
        ),
        (
            {"targets": [{"name": "Web!", "backend": {"type": "local", "command": ["x"]}}]},
            "targets[0].name",
            "Expected `str` matching regex",
        ),
        (
            {
                "targets": [
                    {
                        "name": "web",
                        "min_replicas": 5,
                        "max_replicas": 2,
                        "backend": {"type": "local", "command": ["x", "{port}"], "initial_replicas": 2},
                    }
                ]
            },
            "targets[0].min_replicas",
            "above max_replicas",
        ),
        (
            {"targets": [{"name": "web", "backend": {"type": "local", "command": ["x"]}}]},
            "targets[0].backend.command",
            "no argument or env value uses {port}",
        ),
        (
            {
                "targets": [
                    {
                        "name": "rc",
                        "backend": {
                            "type": "kubernetes",
                            "api_version": "v1",
                            "kind": "ReplicationController",
                            "name": "rc",
                        },
                    }
                ]
            },
            "targets[0].backend.api_version",
            "has no API group",
        ),
    ],
)
async def test_a_bad_config_is_rejected_with_file_field_and_reason(
    tmp_path: Path, document: dict[str, Any], field: str, reason: str
) -> None:
    path = tmp_path / "actuator.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        validate_actuator_config(load_config(path, ActuatorConfig), file=str(path))
    assert caught.value.file == str(path)
    assert caught.value.field.startswith(field), caught.value
    assert reason in caught.value.reason


async def test_the_actuator_process_scales_on_a_decision_and_stops_cleanly_without_orphans(
    nats_server: NatsServer,
    bus: Bus,
    listen: Any,
    tmp_path: Path,
    replica_command: Callable[..., list[str]],
    eventually: Eventually,
    pid_alive: Callable[[int], bool],
    start_service: ServiceStarter,
) -> None:
    config = tmp_path / "actuator.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "service": {"instance": "actuator-proc", "bus": {"url": "nats://127.0.0.1:1"}},
                "status_interval_seconds": 0.5,
                "targets": [
                    {
                        "name": "web",
                        "min_replicas": 1,
                        "max_replicas": 8,
                        "backend": {"type": "local", "command": replica_command(), "health_interval_seconds": 0.1},
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    results = await listen(bus.subjects.results_all, ExecutionResult)
    statuses = await listen(bus.subjects.status("web"), TargetStatus)
    # The NATS URL from the environment overrides the unreachable one in the file.
    process = await start_service("actuator", config, nats_server.url)
    try:
        await eventually(lambda: any(s.ready_replicas == 1 for s in statuses.messages), within=20.0)
        wanted = Decision(
            id=uuid.uuid4().hex,
            target="web",
            current_replicas=1,
            desired_replicas=3,
            reason="ScaleUpLimit",
            decided_at=time.time(),
        )
        batch = DecisionBatch(
            batch_id=uuid.uuid4().hex, decider="test", tick=1, decided_at=time.time(), decisions=(wanted,)
        )
        await bus.publish_persistent(bus.subjects.decisions, batch, msg_id=batch.batch_id)
        await eventually(lambda: any(r.decision_id == wanted.id for r in results.messages), within=15.0)
        assert results.messages[0].status == "applied"
        await eventually(lambda: any(s.ready_replicas == 3 for s in statuses.messages), within=15.0)
        pids = [r.pid for r in statuses.messages[-1].replicas]
        assert len(pids) == 3 and all(pid_alive(pid) for pid in pids)
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert stdout == b"", "the actuator prints nothing on stdout"
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.strip()]
    assert any(line["msg"] == "actuator stopped" for line in lines)
    assert all(not pid_alive(pid) for pid in pids), "no replica outlives the actuator"


async def test_replicas_die_with_the_actuator_even_when_it_is_killed(
    nats_server: NatsServer,
    bus: Bus,
    listen: Any,
    tmp_path: Path,
    replica_command: Callable[..., list[str]],
    eventually: Eventually,
    pid_alive: Callable[[int], bool],
    start_service: ServiceStarter,
) -> None:
    config = tmp_path / "actuator.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "service": {"instance": "actuator-killed", "bus": {"url": nats_server.url}},
                "targets": [
                    {"name": "web", "backend": {"type": "local", "command": replica_command(), "initial_replicas": 2}},
                ],
            }
        ),
        encoding="utf-8",
    )
    statuses = await listen(bus.subjects.status("web"), TargetStatus)
    process = await start_service(
        "actuator", config, nats_server.url, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    await eventually(
        lambda: any(s.current_replicas == 2 and all(r.pid for r in s.replicas) for s in statuses.messages), within=20.0
    )
    pids = [r.pid for r in statuses.messages[-1].replicas]
    process.kill()
    await process.wait()
    await eventually(lambda: not any(pid_alive(pid) for pid in pids), within=10.0)
