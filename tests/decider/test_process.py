"""The decider as an OS process: the demo config starts and stops cleanly; bad config stops start-up."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

from shared.natsserver import NatsServer
from tests.conftest import ServiceStarter

REPO = Path(__file__).resolve().parents[2]


async def run_decider(
    start_service: ServiceStarter, config: Path, nats_url: str, *, stop_when_started: bool
) -> tuple[int, str]:
    """Run the decider; with ``stop_when_started``, send SIGTERM once it logged "started" (bounded: 20 s)."""
    process = await start_service("decider", config, nats_url, stdout=asyncio.subprocess.DEVNULL)
    assert process.stderr is not None
    head = b""
    if stop_when_started:
        async with asyncio.timeout(20):
            while b'"msg": "started"' not in head:
                line = await process.stderr.readline()
                if not line:
                    break
                head += line
        process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode is not None
    return process.returncode, (head + err).decode()


async def test_the_demo_config_starts_and_a_sigterm_stops_it_with_exit_code_0(
    nats_server: NatsServer, start_service: ServiceStarter
) -> None:
    code, log = await run_decider(
        start_service, REPO / "deploy/local/decider.yaml", nats_server.url, stop_when_started=True
    )
    assert code == 0, log
    assert '"msg": "started"' in log and '"msg": "stopped"' in log


async def test_an_invalid_policy_stops_start_up_naming_file_field_and_reason(
    nats_server: NatsServer, start_service: ServiceStarter, tmp_path: Path
) -> None:
    shutil.copy(REPO / "deploy/local/decider.yaml", tmp_path / "decider.yaml")
    (tmp_path / "policies").mkdir()
    policy = (REPO / "deploy/local/policies/web.yaml").read_text().replace("maxReplicas: 8", "maxReplicas: -1")
    (tmp_path / "policies" / "web.yaml").write_text(policy)
    code, log = await run_decider(start_service, tmp_path / "decider.yaml", nats_server.url, stop_when_started=False)
    assert code == 1
    assert "web.yaml: spec.maxReplicas: Expected `int` >= 1" in log


async def test_an_unknown_config_field_stops_start_up_with_exit_code_2(
    nats_server: NatsServer, start_service: ServiceStarter, tmp_path: Path
) -> None:
    (tmp_path / "decider.yaml").write_text("tick_interval_secs: 1\n")
    code, log = await run_decider(start_service, tmp_path / "decider.yaml", nats_server.url, stop_when_started=False)
    assert code == 2
    assert "decider.yaml" in log and "tick_interval_secs" in log
